"""The language-neutral case file of assignment vectors, ``tests/data/flags/assignment_cases.json``.

Every SDK (Python, the browser SDK, any other) runs its hashing and bucketing over this file.
The expected outputs are the ``growthbook`` package's (the reference implementation): the file is
generated from it by :func:`generate` and a test checks that regenerating it gives the committed
file. Another test runs Tallystick's own implementation over the file.

Regenerate (after a deliberate change): ``.venv/bin/python tests/flags/test_flag_cases.py --write``.
"""

from __future__ import annotations

import json
import random
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import chooseVariation, fnv1a32, gbhash, getBucketRanges, inNamespace

from tallystick.flags import hashing
from tallystick.flags.evaluate import compile_ruleset

CASES: Final = Path(__file__).resolve().parents[1] / "data" / "flags" / "assignment_cases.json"
SEED: Final = 20261122

NOTES: Final = [
    "fnv1a32: 32-bit FNV-1a (offset basis 2166136261, prime 16777619) over the input's UTF-16 "
    "code units (JavaScript's charCodeAt; for ASCII these are the bytes).",
    "hash, version 2: fnv1a32(decimal string of fnv1a32(seed + value)) % 10000 / 10000. "
    "Version 1: fnv1a32(value + seed) % 1000 / 1000.",
    "hash_value: the string hashed for an attribute value: a non-empty string as is, a finite "
    "non-zero number as JavaScript's String(number) writes it, anything else (null, '', 0, "
    "booleans) is no unit ('').",
    "bucket_ranges: coverage clamped to [0, 1]; weights that are not one finite non-negative "
    "number per variation summing to [0.99, 1.01] are replaced by equal weights (1/n each); "
    "range i = [c, c + coverage * w_i) where c is the sum of the earlier weights, accumulated "
    "in order in IEEE-754 doubles. Compare the ranges exactly.",
    "choose_variation: the first range with start <= hash < end, or -1.",
    "in_namespace: hash('__' + id, value, version 1) in [start, end).",
    "assignments: the whole pipeline, as the growthbook SDK runs an experiment with "
    "hashAttribute 'id': '' (no unit) -> -1; outside the namespace -> -1; else "
    "choose_variation(hash(seed, value, version), bucket_ranges(variations, coverage, weights)).",
]


def _ids(rng: random.Random, n: int) -> list[str]:
    fixed = [
        "", "a", "1", "123", "user-1", "user-2", "anon_7f3c9a", "alice@example.org",
        "0", " ", "ü", "Zoë", "東京", "😀", "a😀b", "\u00e9\u0301", "x" * 200,
        "ffffffff-ffff-ffff-ffff-ffffffffffff", "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    ]  # fmt: skip
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.@"
    out = list(fixed)
    while len(out) < n:
        kind = rng.random()
        if kind < 0.4:
            out.append(f"user-{rng.randrange(10**7)}")
        elif kind < 0.7:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))
        elif kind < 0.85:
            out.append(f"{rng.getrandbits(128):032x}")
        else:
            blocks = [(0xA0, 0x2FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F)]  # Latin, CJK, emoji
            chars = [chr(rng.randint(*rng.choice(blocks))) for _ in range(rng.randint(1, 6))]
            out.append("".join(chars))
    return out


def _seeds(rng: random.Random) -> list[str]:
    return [
        "", "signin-dialog", "new-checkout", "exp-1", "pricing_page.v2", "Zoë-test",
        *(f"experiment-{rng.randrange(10**6)}" for _ in range(6)),
    ]  # fmt: skip


def _weights(rng: random.Random, n: int) -> list[float] | None:
    kind = rng.random()
    if kind < 0.2:
        return None
    if kind < 0.4:
        return [1 / n] * n
    if kind < 0.5:  # invalid: the SDK falls back to equal weights
        return rng.choice([[1.0] * n, [0.5] * (n + 1), [-0.5, *[1.5 / (n - 1)] * (n - 1)]])
    raw = [rng.randint(0, 10) for _ in range(n)]
    if sum(raw) == 0:
        raw[0] = 1
    return [round(x / sum(raw), 4) for x in raw[:-1]] + [
        round(1 - sum(round(x / sum(raw), 4) for x in raw[:-1]), 4)
    ]


def _gb_assign(value: str, case: dict[str, Any]) -> int:
    """The growthbook SDK running the experiment for a unit with this id."""
    ns = case["namespace"]
    gb = GrowthBook(attributes={"id": value})
    result = gb.run(
        Experiment(
            key=case["seed"],
            variations=list(range(case["variations"])),
            coverage=case["coverage"],
            weights=case["weights"],
            namespace=tuple(ns) if ns else None,
            hashVersion=case["version"],
        )
    )
    return result.variationId if result.inExperiment else -1


def generate() -> dict[str, Any]:
    """The case file, every expected output computed by the growthbook package."""
    rng = random.Random(SEED)
    ids = _ids(rng, 300)
    seeds = _seeds(rng)
    doc: dict[str, Any] = {
        "format": "tallystick-assignment-cases",
        "version": 1,
        "reference": f"growthbook {version('growthbook')} (Python SDK)",
        "notes": NOTES,
    }
    doc["fnv1a32"] = [{"input": s, "output": fnv1a32(s)} for s in [*ids[:120], *seeds]]
    hashes = []
    for i, value in enumerate(ids):
        seed = seeds[i % len(seeds)]
        for v in (2, 1) if i % 3 == 0 else (2,):
            hashes.append(
                {"seed": seed, "value": value, "version": v, "output": gbhash(seed, value, v)}
            )
    doc["hash"] = hashes
    numbers: list[Any] = [
        "u1", "", 0, 1, -1, 123, 1.5, -0.25, 1e21, 1e-7, 123456789012345678, 2**53 + 1, 0.1 + 0.2,
        True, False, None, 1e300,
    ]  # fmt: skip
    doc["hash_value"] = [{"attribute": x, "value": _gb_hash_string(x)} for x in numbers]
    ranges_cases: list[dict[str, Any]] = []
    for n in (2, 2, 2, 3, 3, 4, 5, 10):
        for coverage in (1, 0.5, 0.2, 0.99, 0, 0.1234, 1.5, -0.2):
            weights = _weights(rng, n)
            ranges = getBucketRanges(n, coverage, weights)
            ranges_cases.append(
                {"variations": n, "coverage": coverage, "weights": weights,
                 "ranges": [list(r) for r in ranges]}
            )  # fmt: skip
    doc["bucket_ranges"] = ranges_cases
    choose = []
    for rc in ranges_cases[::5]:
        ranges = [(r[0], r[1]) for r in rc["ranges"]]
        points = {0.0, 0.9999, rng.random(), rng.random()}
        for lo, hi in ranges:
            points.update({lo, hi, max(lo - 0.0001, 0.0), min(hi + 0.0001, 0.9999)})
        for h in sorted(points):
            chosen = chooseVariation(h, ranges)
            choose.append({"hash": h, "ranges": rc["ranges"], "variation": chosen})
    doc["choose_variation"] = choose
    namespaces = [
        ("pricing", 0, 0.5),
        ("pricing", 0.5, 1),
        ("signin", 0.25, 0.3),
        ("layer-1", 0, 1),
    ]
    doc["in_namespace"] = [
        {"value": value, "namespace": list(ns), "in": inNamespace(value, ns)}
        for i, value in enumerate(v for v in ids if v)
        for ns in (namespaces[i % 4],)
    ]
    assignments = []
    for i, value in enumerate(ids):
        n = rng.choice([2, 2, 3, 4])
        case: dict[str, Any] = {
            "seed": seeds[1 + i % (len(seeds) - 1)],  # not "": the SDK's key is the seed
            "value": value,
            "version": 2 if i % 5 else 1,
            "variations": n,
            "coverage": rng.choice([1, 1, 0.5, 0.8, 0.05]),
            "weights": _weights(rng, n),
            "namespace": list(namespaces[i % 4]) if i % 3 == 0 else None,
        }
        case["variation"] = _gb_assign(value, case)
        assignments.append(case)
    doc["assignments"] = assignments
    return doc


def _gb_hash_string(x: Any) -> str:
    from growthbook.core import _hash_string, _is_hashable

    return _hash_string(x) if _is_hashable(x) else ""


def _dump(doc: dict[str, Any]) -> str:
    """JSON with one case per line (small, and readable in a diff)."""
    entries = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            rows = ",\n".join(
                "  " + json.dumps(v, ensure_ascii=False, separators=(", ", ": ")) for v in value
            )
            entries.append(f" {json.dumps(key)}: [\n{rows}\n ]")
        else:
            entries.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(entries) + "\n}\n"


@pytest.fixture(scope="module")
def cases() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CASES.read_text(encoding="utf-8"))
    return loaded


def test_the_case_file_is_what_the_growthbook_package_computes() -> None:
    assert CASES.read_text(encoding="utf-8") == _dump(generate()), (
        "tests/data/flags/assignment_cases.json differs from the growthbook package's outputs; "
        "regenerate it with .venv/bin/python tests/flags/test_flag_cases.py --write"
    )


def test_the_case_file_covers_every_section(cases: dict[str, Any]) -> None:
    sections = ("fnv1a32", "hash", "hash_value", "bucket_ranges", "choose_variation")
    for section in (*sections, "in_namespace", "assignments"):
        assert len(cases[section]) >= 10, section
    assert any(c["variation"] == -1 for c in cases["assignments"])
    assert any(c["variation"] >= 2 for c in cases["assignments"])
    assert {c["in"] for c in cases["in_namespace"]} == {True, False}
    assert any(not c["value"].isascii() for c in cases["hash"])


def test_fnv1a32_over_the_case_file(cases: dict[str, Any]) -> None:
    for c in cases["fnv1a32"]:
        assert hashing.fnv1a32(c["input"]) == c["output"], c


def test_hash_over_the_case_file(cases: dict[str, Any]) -> None:
    for c in cases["hash"]:
        assert hashing.hash_unit(c["seed"], c["value"], c["version"]) == c["output"], c
        assert hashing.seeded_hash(c["seed"], c["version"])(c["value"]) == c["output"], c


def test_hash_value_over_the_case_file(cases: dict[str, Any]) -> None:
    for c in cases["hash_value"]:
        assert hashing.hash_value_of(c["attribute"]) == c["value"], c


def test_bucket_ranges_over_the_case_file(cases: dict[str, Any]) -> None:
    for c in cases["bucket_ranges"]:
        got = hashing.bucket_ranges(c["variations"], c["coverage"], c["weights"])
        assert [list(r) for r in got] == c["ranges"], c


def test_choose_variation_over_the_case_file(cases: dict[str, Any]) -> None:
    for c in cases["choose_variation"]:
        ranges = [tuple(r) for r in c["ranges"]]
        assert hashing.choose_variation(c["hash"], ranges) == c["variation"], c


def test_namespaces_over_the_case_file(cases: dict[str, Any]) -> None:
    for c in cases["in_namespace"]:
        assert hashing.in_namespace(c["value"], tuple(c["namespace"])) is c["in"], c


def test_assignments_over_the_case_file(cases: dict[str, Any]) -> None:
    for c in cases["assignments"]:
        ns = tuple(c["namespace"]) if c["namespace"] else None
        got = hashing.assign_variation(
            c["value"], c["seed"], c["variations"], c["coverage"], c["weights"], ns, c["version"]
        )
        assert got == c["variation"], c


def test_compiled_experiments_assign_as_the_case_file_says(cases: dict[str, Any]) -> None:
    """The evaluator's compiled experiment rule agrees with the case file (valid weights only:
    the ruleset parser rejects the others)."""
    checked = 0
    for c in cases["assignments"]:
        weights = c["weights"]
        if weights is not None and not hashing.valid_weights(weights, c["variations"]):
            continue
        experiment: dict[str, Any] = {
            "key": "exp",
            "seed": c["seed"],
            "variations": [{"value": i} for i in range(c["variations"])],
            "coverage": c["coverage"],
            "hash_version": c["version"],
        }
        if weights is not None:
            experiment["weights"] = weights
        if c["namespace"]:
            experiment["namespace"] = {"id": c["namespace"][0], "range": c["namespace"][1:]}
        ruleset = compile_ruleset(
            {"flags": {"f": {"type": "number", "default": -1, "environments": {
                "prod": {"rules": [{"experiment": experiment}]}}}}},
            "prod",
        )  # fmt: skip
        e = ruleset.evaluate("f", {"id": c["value"]})
        assert e.value == c["variation"], c
        assert e.exposure is (c["variation"] >= 0)
        checked += 1
    assert checked > 200


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: test_flag_cases.py --write   (regenerates the case file)")
    CASES.parent.mkdir(parents=True, exist_ok=True)
    CASES.write_text(_dump(generate()), encoding="utf-8")
    print(f"wrote {CASES}")
