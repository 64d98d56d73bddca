"""Over 1,000,000 units, assignment is uniform and independent across experiments.

The hash is vectorised with numpy here (FNV-1a column by column over the ids' bytes), checked
against the scalar implementation and the growthbook package on a sample, so the million-unit
checks take a few seconds. The ids are sequential (``user-0`` … ``user-999999``): the case where
a weak hash would show structure. The inputs are fixed, so the p-values are too: no flakiness.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pytest
from growthbook.core import gbhash
from scipy import stats

from tallystick.flags.hashing import (
    OFFSET_BASIS,
    PRIME,
    bucket_ranges,
    fnv1a32,
    hash_unit,
    in_namespace,
)

N: Final = 1_000_000
MASK64: Final = np.uint64(0xFFFFFFFF)
U64 = npt.NDArray[np.uint64]


def _fnv(state: U64, data: npt.NDArray[np.bytes_]) -> U64:
    """FNV-1a over each ASCII byte string, continuing from ``state``."""
    width = data.dtype.itemsize
    mat = data.view(np.uint8).reshape(len(data), width).astype(np.uint64)
    lengths = np.char.str_len(data)
    h = state.copy()
    for j in range(width):
        stepped = ((h ^ mat[:, j]) * np.uint64(PRIME)) & MASK64
        h = np.where(j < lengths, stepped, h)
    return h


def hash_v2(seed: str, ids: npt.NDArray[np.bytes_]) -> npt.NDArray[np.float64]:
    """``hash_unit(seed, id, 2)`` for every id (ASCII seeds and ids)."""
    # FNV-1a runs left to right: hash the seed once, continue over each id
    first = _fnv(np.full(len(ids), fnv1a32(seed), dtype=np.uint64), ids)
    second = _fnv(np.full(len(ids), OFFSET_BASIS, dtype=np.uint64), first.astype("S10"))
    return (second % np.uint64(10000)).astype(np.float64) / 10000


def assign(n: npt.NDArray[np.float64], ranges: list[tuple[float, float]]) -> npt.NDArray[np.int64]:
    out = np.full(len(n), -1, dtype=np.int64)
    for i, (lo, hi) in reversed(list(enumerate(ranges))):
        out[(n >= lo) & (n < hi)] = i
    return out


@pytest.fixture(scope="module")
def ids() -> npt.NDArray[np.bytes_]:
    return np.char.add(b"user-", np.arange(N).astype("S7"))


@pytest.fixture(scope="module")
def hashes(ids: npt.NDArray[np.bytes_]) -> dict[str, npt.NDArray[np.float64]]:
    return {seed: hash_v2(seed, ids) for seed in ("signin-dialog", "new-checkout")}


def test_the_vectorised_hash_is_the_hash(
    ids: npt.NDArray[np.bytes_], hashes: dict[str, npt.NDArray[np.float64]]
) -> None:
    sample = np.random.default_rng(7).choice(N, 3000, replace=False)
    for seed, h in hashes.items():
        for i in sample:
            unit = ids[i].decode()
            assert h[i] == hash_unit(seed, unit, 2) == gbhash(seed, unit, 2), (seed, unit)


def test_hash_values_are_uniform_over_a_million_units(
    hashes: dict[str, npt.NDArray[np.float64]],
) -> None:
    for h in hashes.values():
        assert h.min() >= 0
        assert h.max() < 1
        counts = np.bincount((h * 10000).round().astype(np.int64) // 100, minlength=100)
        result = stats.chisquare(counts)
        assert result.pvalue > 0.001, result  # 100 equal bins


def test_variations_get_their_weights_over_a_million_units(
    hashes: dict[str, npt.NDArray[np.float64]],
) -> None:
    weights = [0.1, 0.2, 0.3, 0.4]
    v = assign(hashes["signin-dialog"], bucket_ranges(4, 1.0, weights))
    counts = np.bincount(v, minlength=4)
    assert counts.sum() == N
    result = stats.chisquare(counts, f_exp=np.array(weights) * N)
    assert result.pvalue > 0.001, (counts, result)
    # with 60 % coverage, 40 % are out and the rest keep the weights
    v = assign(hashes["signin-dialog"], bucket_ranges(4, 0.6, weights))
    out = int((v == -1).sum())
    assert abs(out / N - 0.4) < 0.003
    inside = np.bincount(v[v >= 0], minlength=4)
    result = stats.chisquare(inside, f_exp=np.array(weights) * inside.sum())
    assert result.pvalue > 0.001, (inside, result)


def test_two_experiments_assign_independently(hashes: dict[str, npt.NDArray[np.float64]]) -> None:
    a = assign(hashes["signin-dialog"], bucket_ranges(2))
    b = assign(hashes["new-checkout"], bucket_ranges(3, 1.0, [0.2, 0.3, 0.5]))
    table = np.zeros((2, 3), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    result = stats.chi2_contingency(table)
    assert result.pvalue > 0.001, (table, result)
    # and the hashes themselves are uncorrelated
    r = np.corrcoef(hashes["signin-dialog"], hashes["new-checkout"])[0, 1]
    assert abs(r) < 0.005


def test_namespaces_split_units_into_exclusive_layers() -> None:
    units = [f"user-{i}" for i in range(20_000)]
    left = [in_namespace(u, ("pricing", 0, 0.5)) for u in units]
    right = [in_namespace(u, ("pricing", 0.5, 1)) for u in units]
    assert not any(x and y for x, y in zip(left, right, strict=True))
    assert all(x or y for x, y in zip(left, right, strict=True))
    assert abs(sum(left) / len(units) - 0.5) < 0.015
    # an experiment's own hash is independent of its namespace membership
    inside = [hash_unit("signin-dialog", u) for u, x in zip(units, left, strict=True) if x]
    assert abs(np.mean(inside) - 0.5) < 0.01
