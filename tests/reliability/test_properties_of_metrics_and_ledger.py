"""Property-based tests (hypothesis): metric invariants and ledger verification hold for any input."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.evidence import GENESIS, Record, chain_hash, content_digest, verify_records
from config.errors import LedgerIntegrityError
from metrics.drift import column_drift
from metrics.fairness import FairnessCounts, fairness, fairness_from_counts

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
numbers = st.lists(finite, min_size=2, max_size=300)
cats = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=2, max_size=300)


@SETTINGS
@given(ref=numbers, cur=numbers, method=st.sampled_from(["ks", "wasserstein", "jensenshannon", "psi", "hellinger",
                                                        "kl_div", "anderson", "cramer_von_mises", "mannw",
                                                        "ed"]), seed=st.integers(0, 2**16))
def test_numeric_drift_scores_are_bounded_and_ignore_row_order(ref: list[float], cur: list[float], method: str,
                                                               seed: int) -> None:
    r, c = pd.Series(ref), pd.Series(cur)
    res = column_drift(r, c, kind="numerical", method=method)
    shuffled = column_drift(r.sample(frac=1, random_state=seed), c.sample(frac=1, random_state=seed + 1),
                            kind="numerical", method=method)
    assert res.method == method
    if res.score == res.score:
        assert res.score >= 0
        if res.is_p_value:
            assert res.score <= 1 + 1e-12
        assert shuffled.score == pytest.approx(res.score, rel=1e-9, abs=1e-12)
        assert shuffled.drifted == res.drifted


@SETTINGS
@given(ref=cats, cur=cats, method=st.sampled_from(["chisquare", "jensenshannon", "psi", "TVD", "hellinger"]))
def test_categorical_distances_are_bounded_and_symmetric_where_defined(ref: list[str], cur: list[str],
                                                                       method: str) -> None:
    a = column_drift(pd.Series(ref), pd.Series(cur), kind="categorical", method=method)
    if a.score != a.score:
        return
    assert a.score >= 0
    if method in ("jensenshannon", "hellinger"):
        assert a.score <= 1 + 1e-12
        # the same categories on both sides: swapping reference and current changes nothing
        if set(ref) == set(cur):
            b = column_drift(pd.Series(cur), pd.Series(ref), kind="categorical", method=method)
            assert b.score == pytest.approx(a.score, rel=1e-9, abs=1e-12)


def test_a_sample_is_never_drifted_from_itself() -> None:
    rng = np.random.default_rng(0)
    s = pd.Series(rng.normal(size=500))
    for method in ("ks", "wasserstein", "jensenshannon", "psi", "hellinger", "ed"):
        res = column_drift(s, s.copy(), kind="numerical", method=method)
        assert not res.drifted, method


groups = st.lists(st.tuples(st.sampled_from(["F", "M", "X"]), st.booleans(), st.booleans()), min_size=1,
                  max_size=400)


@SETTINGS
@given(rows=groups, split=st.integers(0, 400), seed=st.integers(0, 2**16))
def test_fairness_is_order_free_bounded_and_chunked_equals_whole(rows: list[tuple[str, bool, bool]], split: int,
                                                                 seed: int) -> None:
    df = pd.DataFrame(rows, columns=["g", "y", "p"])
    whole = fairness(y_pred=df["p"], y_true=df["y"], sensitive=df[["g"]], pos_label=True, min_group_size=1)
    shuffled = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    again = fairness(y_pred=shuffled["p"], y_true=shuffled["y"], sensitive=shuffled[["g"]], pos_label=True,
                     min_group_size=1)
    assert _jsonish(again.metrics) == _jsonish(whole.metrics)
    k = min(split, len(df))
    parts = [df.iloc[:k], df.iloc[k:]]
    counts = [FairnessCounts.from_arrays(y_pred=p["p"], y_true=p["y"], sensitive=p[["g"]], pos_label=True)
              for p in parts if len(p)]
    merged = counts[0]
    for c in counts[1:]:
        merged = merged.merge(c)
    from_chunks = fairness_from_counts(merged, min_group_size=1)
    assert _jsonish(from_chunks.metrics) == _jsonish(whole.metrics)
    for name, value in whole.metrics.items():
        if value == value:
            assert 0.0 <= value <= 1.0 + 1e-12, name


def _jsonish(d: dict[str, float]) -> dict[str, Any]:
    return {k: (None if v != v else round(v, 12)) for k, v in d.items()}


payloads = st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), finite, st.text(max_size=20),
                                                                       st.booleans(), st.none()), max_size=5)


def _chain(items: list[dict[str, Any]]) -> list[Record]:
    out: list[Record] = []
    prev = GENESIS
    for i, payload in enumerate(items, 1):
        content = {"seq": i, "ts": f"2026-01-01T00:00:{i % 60:02d}Z", "kind": "check_run", "system": "s",
                   "controls": ["iso42001:A.6.2.6"], "payload": payload}
        digest = content_digest(content)
        h = chain_hash(prev, digest)
        out.append(Record(i, content["ts"], "check_run", "s", ["iso42001:A.6.2.6"], payload, prev, h))
        prev = h
    return out


@SETTINGS
@given(items=st.lists(payloads, min_size=2, max_size=30), data=st.data())
def test_any_single_change_to_a_chain_is_detected_at_or_before_the_changed_record(
        items: list[dict[str, Any]], data: st.DataObject) -> None:
    chain = _chain(items)
    assert verify_records(chain) == len(chain)
    # round trip through JSON, as a pack does
    assert verify_records([Record.from_json(json.loads(json.dumps(r.to_json()))) for r in chain]) == len(chain)
    i = data.draw(st.integers(0, len(chain) - 1))
    how = data.draw(st.sampled_from(["payload", "kind", "drop", "swap", "dup"]))
    broken = list(chain)
    r = chain[i]
    if how == "payload":
        broken[i] = Record(r.seq, r.ts, r.kind, r.system_id, r.controls, {**r.payload, "x-tampered": 1},
                           r.prev_hash, r.hash)
    elif how == "kind":
        broken[i] = Record(r.seq, r.ts, "human_override", r.system_id, r.controls, r.payload, r.prev_hash, r.hash)
    elif how == "drop":
        if i == len(chain) - 1:
            return  # dropping the tail is caught by the head/manifest, tested elsewhere
        del broken[i]
    elif how == "swap":
        if i == len(chain) - 1:
            return
        broken[i], broken[i + 1] = broken[i + 1], broken[i]
    else:
        broken.insert(i, r)
    with pytest.raises(LedgerIntegrityError) as err:
        verify_records(broken)
    assert err.value.seq is not None and err.value.seq <= r.seq + 1
