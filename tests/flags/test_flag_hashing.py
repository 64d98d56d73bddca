"""Hashing and bucketing equal the growthbook package's, for generated ids, seeds, weights,
coverages and namespaces; and the properties assignment must have (determinism, half-open bucket
boundaries, coverage changes never move a unit to another variation)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import (
    _hash_string,
    _is_hashable,
    chooseVariation,
    fnv1a32,
    gbhash,
    getBucketRanges,
    getEqualWeights,
    inNamespace,
)
from hypothesis import example, given
from hypothesis import strategies as st

from tallystick.flags import hashing

ids = st.text(min_size=0, max_size=60)
ascii_ids = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
seeds = st.text(min_size=0, max_size=40)
variation_counts = st.integers(min_value=1, max_value=8)
coverages = st.floats(min_value=-0.5, max_value=1.5, allow_nan=False) | st.sampled_from(
    [0, 0.5, 1, 0.0001, 0.9999]
)


@st.composite
def weight_vectors(draw: st.DrawFn) -> tuple[int, list[float] | None]:
    n = draw(variation_counts)
    kind = draw(st.sampled_from(["none", "valid", "any"]))
    if kind == "none":
        return n, None
    if kind == "any":
        return n, draw(st.lists(st.floats(-1, 2, allow_nan=False), min_size=0, max_size=9))
    raw = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n).filter(any))
    return n, [x / sum(raw) for x in raw]


# -- equal to the growthbook package -----------------------------------------------------------


@given(ids)
@example("")
@example("😀")
@example("\ud800")  # a lone surrogate
def test_fnv1a32_is_growthbooks(s: str) -> None:
    assert hashing.fnv1a32(s) == fnv1a32(s)


@given(seeds, ids, st.sampled_from([1, 2]))
def test_hash_is_growthbooks(seed: str, value: str, version: int) -> None:
    expected = gbhash(seed, value, version)
    assert hashing.hash_unit(seed, value, version) == expected
    assert hashing.seeded_hash(seed, version)(value) == expected


def test_the_compiled_fnv_is_installed() -> None:
    """fnv-hash-fast's C part is what makes a rollout cheap (bench/flags.py)."""
    assert hashing.FAST_FNV is not None


@given(seeds | ascii_ids, ids | ascii_ids)
@example("seed", "user-1")
@example("", "")
@example("é", "user")
def test_the_c_and_python_paths_give_the_same_bits(seed: str, value: str) -> None:
    python_v2 = hashing._python_v2(hashing._fnv(hashing.OFFSET_BASIS, seed))
    assert hashing.seeded_hash(seed)(value) == python_v2(value)
    assert hashing.fnv1a32(value) == hashing._fnv(hashing.OFFSET_BASIS, value)


@given(seeds, ids, st.integers().filter(lambda v: v not in (1, 2)))
def test_other_hash_versions_are_refused(seed: str, value: str, version: int) -> None:
    assert gbhash(seed, value, version) is None
    with pytest.raises(ValueError, match="hash version"):
        hashing.hash_unit(seed, value, version)
    with pytest.raises(ValueError, match="hash version"):
        hashing.seeded_hash(seed, version)


@given(
    st.one_of(
        st.text(max_size=10),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
@example(1e21)
@example(-1e-7)
@example(2**53 + 1)
@example(10**400)
def test_the_hashed_string_of_an_attribute_is_growthbooks(value: Any) -> None:
    expected = _hash_string(value) if _is_hashable(value) else ""
    assert hashing.hash_value_of(value) == expected


@given(variation_counts)
def test_equal_weights_are_growthbooks(n: int) -> None:
    assert hashing.equal_weights(n) == getEqualWeights(n)


@given(weight_vectors(), coverages)
def test_bucket_ranges_are_growthbooks(nw: tuple[int, list[float] | None], coverage: float) -> None:
    n, weights = nw
    assert hashing.bucket_ranges(n, coverage, weights) == getBucketRanges(n, coverage, weights)


@given(st.floats(0, 1, exclude_max=True), weight_vectors(), coverages)
def test_choose_variation_is_growthbooks(
    h: float, nw: tuple[int, list[float] | None], coverage: float
) -> None:
    ranges = getBucketRanges(nw[0], coverage, nw[1])
    assert hashing.choose_variation(h, ranges) == chooseVariation(h, ranges)


@given(ids, st.text(min_size=1, max_size=20), st.floats(0, 1), st.floats(0, 1))
def test_namespaces_are_growthbooks(value: str, ns: str, a: float, b: float) -> None:
    namespace = (ns, min(a, b), max(a, b))
    assert hashing.in_namespace(value, namespace) is inNamespace(value, namespace)


@given(
    ascii_ids | ids,
    st.text(min_size=1, max_size=30),
    weight_vectors().filter(lambda nw: nw[0] >= 2),
    coverages.filter(lambda c: 0 <= c <= 1),
    st.none()
    | st.tuples(st.sampled_from(["layer", "pricing"]), st.floats(0, 0.5), st.floats(0.5, 1)),
    st.sampled_from([1, 2]),
)
def test_the_chosen_variation_is_the_growthbook_sdks(
    value: str,
    seed: str,
    nw: tuple[int, list[float] | None],
    coverage: float,
    namespace: tuple[str, float, float] | None,
    version: int,
) -> None:
    n, weights = nw
    gb = GrowthBook(attributes={"id": value})
    result = gb.run(
        Experiment(
            key=seed,
            variations=list(range(n)),
            weights=weights,
            coverage=coverage,
            namespace=namespace,
            hashVersion=version,
        )
    )
    expected = result.variationId if result.inExperiment else -1
    got = hashing.assign_variation(value, seed, n, coverage, weights, namespace, version)
    assert got == expected


# -- properties --------------------------------------------------------------------------------


@given(seeds, ids, st.sampled_from([1, 2]))
def test_hashing_is_deterministic_and_in_the_unit_interval(
    seed: str, value: str, version: int
) -> None:
    h = hashing.hash_unit(seed, value, version)
    assert 0 <= h < 1
    assert h == hashing.hash_unit(seed, value, version)
    assert h * (10000 if version == 2 else 1000) == pytest.approx(
        round(h * (10000 if version == 2 else 1000))
    )


@given(weight_vectors(), coverages)
def test_ranges_tile_the_unit_interval(nw: tuple[int, list[float] | None], coverage: float) -> None:
    n, weights = nw
    ranges = hashing.bucket_ranges(n, coverage, weights)
    assert len(ranges) == n
    c = min(max(coverage, 0), 1)
    for lo, hi in ranges:
        assert 0 <= lo <= hi <= 1 + 1e-9
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert hi <= lo + 1e-12  # no overlap: a unit is in one variation at most
    assert sum(hi - lo for lo, hi in ranges) == pytest.approx(c if n else 0, abs=0.011)


@given(weight_vectors().filter(lambda nw: nw[0] >= 2), coverages)
def test_bucket_boundaries_are_half_open(
    nw: tuple[int, list[float] | None], coverage: float
) -> None:
    ranges = hashing.bucket_ranges(nw[0], coverage, nw[1])
    for i, (lo, hi) in enumerate(ranges):
        if hi <= lo:
            continue  # an empty range (zero weight or coverage) holds nothing
        assert hashing.choose_variation(lo, ranges) == i
        before_end = math.nextafter(hi, -math.inf)
        if before_end >= lo:
            assert hashing.choose_variation(before_end, ranges) == i
        if i == len(ranges) - 1 or ranges[i + 1][0] > hi:
            assert hashing.choose_variation(hi, ranges) != i


@given(
    ids.filter(bool),
    st.text(min_size=1, max_size=20),
    weight_vectors().filter(lambda nw: nw[0] >= 2),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_raising_coverage_never_moves_a_unit(
    value: str, seed: str, nw: tuple[int, list[float] | None], c1: float, c2: float
) -> None:
    low, high = min(c1, c2), max(c1, c2)
    before = hashing.assign_variation(value, seed, nw[0], low, nw[1])
    after = hashing.assign_variation(value, seed, nw[0], high, nw[1])
    if before >= 0:
        assert after == before


def test_the_seed_decouples_experiments() -> None:
    units = [f"user-{i}" for i in range(2000)]
    a = [hashing.hash_unit("signin-dialog", u) for u in units]
    b = [hashing.hash_unit("new-checkout", u) for u in units]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    assert same < 10  # 1 in 10,000 by chance


def test_many_units_seeds_weights_and_coverages_are_assigned_as_the_sdk_does() -> None:
    rng = random.Random(8)
    for i in range(5000):
        n = rng.choice([2, 2, 3, 5])
        raw = [rng.random() for _ in range(n)]
        weights = None if i % 4 == 0 else [x / sum(raw) for x in raw]
        coverage = rng.choice([1.0, 0.5, rng.random()])
        namespace = ("layer", 0.0, 0.6) if i % 7 == 0 else None
        unit, seed = f"u{rng.getrandbits(40)}", f"exp-{i % 50}"
        version = 1 if i % 9 == 0 else 2
        result = GrowthBook(attributes={"id": unit}).run(
            Experiment(
                key=seed,
                variations=list(range(n)),
                weights=weights,
                coverage=coverage,
                namespace=namespace,
                hashVersion=version,
            )
        )
        expected = result.variationId if result.inExperiment else -1
        got = hashing.assign_variation(unit, seed, n, coverage, weights, namespace, version)
        assert got == expected, (unit, seed, n, weights, coverage, namespace, version)


def test_a_unit_without_an_id_is_in_no_experiment() -> None:
    assert hashing.assign_variation("", "exp", 2) == -1


def test_invalid_weights_fall_back_to_equal_weights_like_the_sdk() -> None:
    assert hashing.bucket_ranges(2, 1, [0.7, 0.7]) == [(0, 0.5), (0.5, 1.0)]
    assert hashing.bucket_ranges(2, 1, [1.2, -0.2]) == [(0, 0.5), (0.5, 1.0)]
    assert hashing.bucket_ranges(3, 1, [0.5, 0.5]) == hashing.bucket_ranges(3)
    assert not hashing.valid_weights([True, False], 2)
    assert not hashing.valid_weights([math.inf, 0], 2)
    assert hashing.valid_weights([0.2, 0.8], 2)
