"""Inference payloads as rows: KServe v1 and Open Inference Protocol v2, and Seldon's formats.

A request body becomes one row per instance (features), a response body one prediction per instance,
and a request joined with its response on the shared id becomes rows of features plus the prediction.
Shapes understood:

* v1: ``{"instances": [...]}`` / ``{"predictions": [...]}``; an instance is an object (named
  features), a list (positional: ``feature_names`` name them, otherwise ``f0, f1, ...``) or a scalar.
* v2 (Open Inference Protocol): ``{"inputs": [{"name", "shape", "datatype", "data"}]}`` /
  ``{"outputs": [...]}``; one tensor of shape ``[n, k]`` holds k positional features, several tensors
  of shape ``[n]`` or ``[n, 1]`` are one named feature each. The first output is the prediction.
* Seldon: ``{"data": {"names": [...], "ndarray": [[...]]}}`` or ``{"data": {"tensor": {"shape", "values"}}}``,
  and feedback ``{"truth": {"data": ...}}``.

Anything else is an :class:`~config.errors.InputError` with the reason, so the ingest endpoint can
answer 4xx and a file source can name the bad object.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from config.errors import InputError

P = ParamSpec("P")
R = TypeVar("R")


def _malformed_is_input_error(parse: Callable[P, R]) -> Callable[P, R]:
    """A payload of the right keys but wrong shapes (``"shape": [null]``, a tensor that is a number) is
    an InputError with the reason too, never a TypeError escaping to the caller."""

    @functools.wraps(parse)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return parse(*args, **kwargs)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise InputError(f"malformed {parse.__name__.removeprefix('parse_')} payload: "
                             f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def load_json(body: bytes | str | Any) -> Any:
    if isinstance(body, bytes | str):
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"payload is not JSON: {exc}") from exc
    return body


def _names(k: int, feature_names: Sequence[str]) -> list[str]:
    if feature_names:
        if len(feature_names) != k:
            raise InputError(f"instances have {k} positional values but {len(feature_names)} feature names are set")
        return list(feature_names)
    return [f"f{i}" for i in range(k)]


def _rows_from_matrix(values: list[Any], feature_names: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for inst in values:
        if isinstance(inst, dict):
            rows.append(dict(inst))
        elif isinstance(inst, list):
            rows.append(dict(zip(_names(len(inst), feature_names), inst, strict=True)))
        else:
            rows.append(dict(zip(_names(1, feature_names), [inst], strict=True)))
    return rows


def _reshape(data: list[Any], shape: Sequence[int]) -> list[Any]:
    flat: list[Any] = []

    def walk(x: Any) -> None:
        if isinstance(x, list):
            for v in x:
                walk(v)
        else:
            flat.append(x)

    walk(data)
    if not shape:
        return flat
    n = int(shape[0])
    if n <= 0:
        return []
    if len(flat) % n:
        raise InputError(f"tensor data of {len(flat)} values does not fit shape {list(shape)}")
    width = len(flat) // n
    return [flat[i * width:(i + 1) * width] for i in range(n)]


def _v2_columns(tensors: list[Any], feature_names: Sequence[str], what: str) -> list[dict[str, Any]]:
    if not tensors or not all(isinstance(t, dict) and "data" in t for t in tensors):
        raise InputError(f"v2 {what} must be a list of tensors with `data`")
    if len(tensors) == 1:
        t = tensors[0]
        rows = _reshape(t["data"], t.get("shape") or [len(t["data"])])
        if rows and len(rows[0]) == 1 and not feature_names:
            return [{str(t.get("name") or "f0"): r[0]} for r in rows]
        return _rows_from_matrix(rows, feature_names)
    columns: dict[str, list[Any]] = {}
    for t in tensors:
        rows = _reshape(t["data"], t.get("shape") or [len(t["data"])])
        columns[str(t.get("name"))] = [r[0] if len(r) == 1 else r for r in rows]
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise InputError(f"v2 {what} tensors have different lengths: {sorted(lengths)}")
    n = lengths.pop()
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def _seldon_matrix(data: dict[str, Any]) -> tuple[list[Any], list[str]]:
    names = [str(n) for n in data.get("names") or []]
    if "ndarray" in data:
        values = data["ndarray"]
    elif "tensor" in data:
        values = _reshape(data["tensor"].get("values", []), data["tensor"].get("shape") or [])
    else:
        raise InputError("Seldon `data` needs `ndarray` or `tensor`")
    if not isinstance(values, list):
        raise InputError("Seldon `data` values must be a list")
    return values, names


@_malformed_is_input_error
def parse_request(body: Any, feature_names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Feature rows of one request (v1, v2 or Seldon)."""
    doc = load_json(body)
    if isinstance(doc, dict) and isinstance(doc.get("instances"), list):
        return _rows_from_matrix(doc["instances"], feature_names)
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), list):
        return _v2_columns(doc["inputs"], feature_names, "inputs")
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        values, names = _seldon_matrix(doc["data"])
        return _rows_from_matrix(values, feature_names or names)
    raise InputError("request payload has none of `instances` (v1), `inputs` (v2) or `data` (Seldon)")


def _scalar(v: Any) -> Any:
    return v[0] if isinstance(v, list) and len(v) == 1 else v


@_malformed_is_input_error
def parse_response(body: Any) -> list[Any]:
    """One prediction per instance of one response (v1, v2 or Seldon)."""
    doc = load_json(body)
    if isinstance(doc, dict) and isinstance(doc.get("predictions"), list):
        return [_scalar(v) for v in doc["predictions"]]
    if isinstance(doc, dict) and isinstance(doc.get("outputs"), list) and doc["outputs"]:
        t = doc["outputs"][0]
        if not isinstance(t, dict) or "data" not in t:
            raise InputError("v2 outputs must be tensors with `data`")
        return [_scalar(r) for r in _reshape(t["data"], t.get("shape") or [len(t["data"])])]
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        values, _ = _seldon_matrix(doc["data"])
        return [_scalar(v) for v in values]
    raise InputError("response payload has none of `predictions` (v1), `outputs` (v2) or `data` (Seldon)")


@_malformed_is_input_error
def parse_feedback(body: Any) -> list[Any]:
    """The ground truth of a Seldon feedback event, one value per instance."""
    doc = load_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("truth"), dict):
        raise InputError("feedback payload has no `truth`")
    return parse_response(doc["truth"])


def join(event_id: str, request: Any, response: Any, *, feature_names: Sequence[str] = (),
         prediction_column: str = "prediction", id_column: str = "id") -> list[dict[str, Any]]:
    """Rows of features plus prediction for one request/response pair sharing ``event_id``.

    A request with several instances gives ids ``{event_id}/{i}`` so each row stays addressable (and a
    Seldon feedback for the same event, with as many truths, lands on the same rows).
    """
    rows = parse_request(request, feature_names) if request is not None else []
    preds = parse_response(response) if response is not None else []
    if rows and preds and len(rows) != len(preds):
        raise InputError(f"event {event_id}: {len(rows)} instances but {len(preds)} predictions")
    n = max(len(rows), len(preds))
    out: list[dict[str, Any]] = []
    for i in range(n):
        row = dict(rows[i]) if rows else {}
        if preds:
            row[prediction_column] = preds[i]
        row[id_column] = event_id if n == 1 else f"{event_id}/{i}"
        out.append(row)
    return out
