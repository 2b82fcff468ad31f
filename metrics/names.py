"""The drift methods that can be named in config and the column kinds each applies to.

A table of names only, without numpy or scipy, so validating a configuration (which the resident service
does at start) does not import the statistics; ``metrics.stattests.REGISTRY`` implements exactly these
(a test holds the two equal).
"""

from __future__ import annotations

_NUM = frozenset({"numerical"})
_CAT = frozenset({"categorical"})
_BOTH = frozenset({"numerical", "categorical"})

METHOD_KINDS: dict[str, frozenset[str]] = {
    "ks": _NUM, "chisquare": _CAT, "z": _CAT, "wasserstein": _NUM, "jensenshannon": _BOTH, "psi": _BOTH,
    "kl_div": _BOTH, "hellinger": _BOTH, "anderson": _NUM, "cramer_von_mises": _NUM, "mannw": _NUM,
    "t_test": _NUM, "es": _NUM, "ed": _NUM, "empirical_mmd": _NUM, "TVD": _CAT, "fisher_exact": _CAT,
    "g_test": _CAT,
}
