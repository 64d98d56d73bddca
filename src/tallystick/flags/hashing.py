"""Deterministic assignment, compatible with GrowthBook's SDKs bit for bit.

A unit (a user id, a device id …) is placed in ``[0, 1)`` by hashing it with a seed (by default
the experiment's key); the hash value then falls in one variation's *bucket range*, or in none
(the unit is outside the experiment's coverage). Nothing is stored: the same unit, seed and
ruleset always give the same answer, on every machine and in every SDK.

The functions mirror the GrowthBook SDKs' ``fnv1a32``, ``gbhash``, ``getEqualWeights``,
``getBucketRanges``, ``chooseVariation``, ``inRange`` and ``inNamespace`` (checked against the
``growthbook`` package in ``tests/flags``):

- :func:`fnv1a32`: 32-bit FNV-1a over the string's **UTF-16 code units** (the JavaScript SDK's
  ``charCodeAt`` loop; for ASCII these are the bytes).
- :func:`hash_unit` version 2 (the default): ``fnv1a32(str(fnv1a32(seed + value))) % 10000 /
  10000``: four decimal places, the seed first. Version 1 (legacy, still used for namespaces):
  ``fnv1a32(value + seed) % 1000 / 1000``.
- :func:`bucket_ranges`: variation *i* gets ``[c_i, c_i + coverage * w_i)`` where ``c_i`` is the
  sum of the earlier weights, accumulated in order as doubles. Coverage is clamped to
  ``[0, 1]``; a weight vector that is not one finite non-negative number per variation summing to
  within ``[0.99, 1.01]`` is replaced by equal weights (the SDK's rule; the ruleset parser rejects
  such vectors before they get here). Raising coverage never moves a unit to another variation.
- :func:`in_namespace`: a namespace is a mutually exclusive layer ``(id, start, end)``; a unit is
  in it when ``hash_unit("__" + id, value, 1)`` is in ``[start, end)``. Experiments in the same
  namespace with disjoint ranges never share a unit.

The compiled evaluator uses :func:`seeded_hash`. For ASCII seeds and units (the common case) both
FNV-1a passes run in C (``fnv-hash-fast``, a dependency: ~0.1 µs a pass instead of ~1–2 µs);
otherwise, or when that package's compiled part is missing, the Python loop hashes the
(constant) seed once at compile time and continues FNV-1a from that state for each unit. Both
paths give the same bits (``tests/flags/test_flag_hashing.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from fnv_hash_fast import fnv1a_32 as _fnv1a_32_c

__all__ = [
    "HASH_VERSIONS",
    "Namespace",
    "assign_variation",
    "bucket_ranges",
    "choose_variation",
    "equal_weights",
    "fnv1a32",
    "hash_unit",
    "hash_value_of",
    "in_namespace",
    "in_range",
    "seeded_hash",
    "valid_weights",
]

OFFSET_BASIS: Final = 0x811C9DC5
PRIME: Final = 0x01000193
MASK: Final = 0xFFFFFFFF
#: the hash versions GrowthBook defines
HASH_VERSIONS: Final = (1, 2)
#: a weight vector whose sum lies outside this interval is replaced by equal weights
WEIGHT_SUM_MIN: Final = 0.99
WEIGHT_SUM_MAX: Final = 1.01

Range = tuple[float, float]

#: the C FNV-1a over bytes, or None when only fnv-hash-fast's pure-Python fallback is installed
#: (slower than the loop here)
FAST_FNV: Final[Callable[[bytes], int] | None] = (
    None if isinstance(_fnv1a_32_c, functools.partial) else _fnv1a_32_c
)


class Namespace(NamedTuple):
    """A mutually exclusive layer: units whose namespace hash is in ``[start, end)``."""

    id: str
    start: float
    end: float


def _units(s: str) -> bytes | list[int]:
    """The code units FNV-1a runs over: bytes for ASCII, UTF-16 code units otherwise."""
    if s.isascii():
        return s.encode()
    data = s.encode("utf-16-le", "surrogatepass")
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def _fnv(state: int, s: str) -> int:
    h = state
    for b in s.encode() if s.isascii() else _units(s):
        h = ((h ^ b) * PRIME) & MASK
    return h  # (seeded_hash masks once at the end instead: the same bits, fewer operations)


def fnv1a32(s: str) -> int:
    """32-bit FNV-1a of ``s`` over its UTF-16 code units (GrowthBook's ``fnv1a32``)."""
    if FAST_FNV is not None and s.isascii():
        return FAST_FNV(s.encode())
    return _fnv(OFFSET_BASIS, s)


def hash_unit(seed: str, value: str, version: int = 2) -> float:
    """The unit's place in ``[0, 1)`` for this seed (GrowthBook's ``gbhash``).

    Raises ``ValueError`` for a hash version other than 1 or 2 (the SDK returns ``None``).
    """
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    raise ValueError(f"unknown hash version {version!r} (expected 1 or 2)")


def in_range(n: float, r: Range) -> bool:
    """Whether ``n`` is in the half-open range ``[start, end)``."""
    return r[0] <= n < r[1]


def choose_variation(n: float, ranges: Sequence[Range]) -> int:
    """The index of the first range holding ``n``, or -1 when none does (not in the experiment)."""
    for i, r in enumerate(ranges):
        if r[0] <= n < r[1]:
            return i
    return -1


def equal_weights(variations: int) -> list[float]:
    """``variations`` equal weights (``1 / variations`` each); none for fewer than one."""
    if variations < 1:
        return []
    return [1 / variations] * variations


def valid_weights(weights: object, variations: int) -> bool:
    """GrowthBook's rule: one finite non-negative number per variation, summing to ~1."""
    if not isinstance(weights, list | tuple) or len(weights) != variations:
        return False
    try:
        if not all(
            isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
            for w in weights
        ):
            return False
        return WEIGHT_SUM_MIN <= sum(weights) <= WEIGHT_SUM_MAX
    except OverflowError:
        return False


def bucket_ranges(
    variations: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[Range]:
    """Each variation's ``[start, end)``; the same doubles as GrowthBook's ``getBucketRanges``."""
    coverage = min(max(coverage, 0), 1)
    used = (
        list(weights)
        if weights is not None and valid_weights(weights, variations)
        else equal_weights(variations)
    )
    cumulative: float = 0
    ranges: list[Range] = []
    for w in used:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def in_namespace(value: str, namespace: Namespace | tuple[str, float, float]) -> bool:
    """Whether the unit is in the namespace's range (hash version 1, seed ``"__" + id``)."""
    n = hash_unit("__" + namespace[0], value, 1)
    return namespace[1] <= n < namespace[2]


def assign_variation(
    value: str,
    seed: str,
    variations: int,
    coverage: float = 1.0,
    weights: Sequence[float] | None = None,
    namespace: Namespace | tuple[str, float, float] | None = None,
    version: int = 2,
) -> int:
    """The variation a unit gets, or -1 (not in the experiment): the whole pipeline.

    No unit (``value == ""``) → -1; outside the namespace → -1; otherwise the variation whose
    bucket range holds ``hash_unit(seed, value, version)``, or -1 outside the coverage.
    """
    if not value:
        return -1
    if namespace is not None and not in_namespace(value, namespace):
        return -1
    return choose_variation(
        hash_unit(seed, value, version), bucket_ranges(variations, coverage, weights)
    )


def _js_number(x: float) -> str:
    """A finite non-zero number as JavaScript's ``String(number)`` writes it."""
    if x < 0:
        return "-" + _js_number(-x)
    mantissa, _, exp = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    padded = (whole + fraction).lstrip("0")
    digits = padded.rstrip("0")
    k = len(digits)
    n = int(exp or "0") - len(fraction) + len(padded)  # x = 0.d1…dk × 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    lead = digits[0] + ("." + digits[1:] if k > 1 else "")
    return lead + "e" + ("+" if n > 0 else "-") + str(abs(n - 1))


def hash_value_of(value: object) -> str:
    """The string hashed for an attribute value, or ``""`` when it cannot identify a unit.

    Like the SDKs: a non-empty string as it is; a finite non-zero number written as JavaScript
    writes it (``123``, ``1.5``, ``1e+21``); anything else (missing, empty, 0, booleans, lists)
    identifies nobody.
    """
    if type(value) is str:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    try:
        x = float(value)
    except OverflowError:
        return ""
    if x == 0 or not math.isfinite(x):
        return ""
    if type(value) is int and abs(value) < 10**15:
        return str(value)
    return _js_number(x)


def seeded_hash(seed: str, version: int = 2) -> Callable[[str], float]:
    """``hash_unit(seed, ·, version)`` as a closure. For version 2: both passes in C for an
    ASCII seed and unit; else the seed's FNV state is computed once (the seed comes first), so
    each call hashes only the unit in Python."""
    if version not in HASH_VERSIONS:
        raise ValueError(f"unknown hash version {version!r} (expected 1 or 2)")
    if version == 1:
        return lambda value: (fnv1a32(value + seed) % 1000) / 1000
    state = _fnv(OFFSET_BASIS, seed)
    slow = _python_v2(state)
    fast = FAST_FNV
    if fast is None or not seed.isascii():
        return slow

    def v2_c(value: str, seed: str = seed, c: Callable[[bytes], int] = fast) -> float:
        if value.isascii():
            return (c(str(c((seed + value).encode())).encode()) % 10000) / 10000
        return slow(value)

    return v2_c


def _python_v2(state: int) -> Callable[[str], float]:
    """Hash version 2 in Python, continuing FNV-1a from the seed's ``state``."""

    def v2(value: str, state: int = state, prime: int = PRIME, mask: int = MASK) -> float:
        # The low 32 bits of a product depend only on the low 32 bits of its factors, and the
        # XOR touches only the low 8: masking once at the end gives the same 32-bit hash.
        h = state
        for b in value.encode() if value.isascii() else _units(value):
            h = (h ^ b) * prime
        g = OFFSET_BASIS
        for b in str(h & mask).encode():
            g = (g ^ b) * prime
        return ((g & mask) % 10000) / 10000

    return v2
