"""Token buckets on a fake clock: the burst, the refill, the bound on every window, LRU eviction,
Retry-After rounding; the refusal counts' spool frames."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallystick.collect.limits import (
    RateLimits,
    TokenBuckets,
    bearer_token,
    ip_key,
    key_digest,
    retry_after,
)
from tallystick.collect.refusals import Refusals
from tallystick.control.blocks import COLLECTOR_STREAM
from tallystick.store import spool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_the_rate() -> None:
    clock = Clock()
    buckets: TokenBuckets[str] = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert buckets.wait("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 100  # refills up to the burst, no more
    assert [buckets.take("a") for _ in range(4)][-1] > 0
    assert buckets.wait("never seen") == 0.0


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0001, 1), (0.5, 1), (1.0, 1), (1.0001, 2), (2.5, 3), (999.99, 1000)]
)
def test_retry_after_is_whole_seconds_at_least_one(seconds: float, header: int) -> None:
    assert retry_after(seconds) == header


def test_the_bucket_map_is_bounded_least_recently_used_first() -> None:
    clock = Clock()
    buckets: TokenBuckets[int] = TokenBuckets(0.001, 1, max_buckets=3, clock=clock)
    for key in (1, 2, 3):
        assert buckets.take(key) == 0.0
    assert buckets.take(1) > 0  # 1 is used again: 2 is now the oldest
    assert buckets.take(4) == 0.0
    assert len(buckets) == 3
    assert buckets.take(2) == 0.0  # evicted, so back with a full bucket; 3 goes
    assert buckets.take(1) > 0
    assert buckets.take(3) == 0.0


@given(
    rate=st.floats(0.1, 50),
    burst=st.integers(1, 30),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_no_window_lets_more_through_than_burst_plus_rate_times_its_length(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = Clock()
    buckets: TokenBuckets[str] = TokenBuckets(rate, burst, clock=clock)
    times, allowed = [], []
    for gap in gaps:
        clock.now += gap
        times.append(clock.now)
        allowed.append(buckets.take("k") == 0.0)
    passed = [t for t, ok in zip(times, allowed, strict=True) if ok]
    for i, start in enumerate(passed):
        for j in range(i, len(passed)):
            assert j - i + 1 <= burst + rate * (passed[j] - start) + 1e-6
    # and a client that keeps to the rate is never refused
    steady: TokenBuckets[str] = TokenBuckets(rate, burst, clock=clock)
    for _ in range(50):
        clock.now += 1.001 / rate  # (exactly 1 / rate may land a rounding error short)
        assert steady.take("k") == 0.0


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer wk-1", b"wk-1"),
        (b"bearer   wk-1  ", b"wk-1"),
        (b"Basic dXNlcg==", None),
        (b"Bearer ", None),
        (b"", None),
    ],
)
def test_bearer_token(header: bytes, token: bytes | None) -> None:
    assert bearer_token(header) == token


def test_keys_are_kept_hashed_and_ipv6_by_its_64() -> None:
    assert key_digest(b"wk-1") == key_digest(b"wk-1") != key_digest(b"wk-2")
    assert b"wk-1" not in key_digest(b"wk-1")
    ip = ipaddress.ip_address
    assert ip_key(ip("2001:db8:1:2::1")) == ip_key(ip("2001:db8:1:2:ffff::9"))
    assert ip_key(ip("2001:db8:1:2::1")) != ip_key(ip("2001:db8:1:3::1"))
    assert ip_key(ip("0.0.0.1")) != ip_key(ip("::1"))  # never the same bucket
    assert ip_key(ip("0.0.0.0")) != ip_key(ip("::"))


def test_over_one_limit_takes_nothing_from_the_other() -> None:
    limits = RateLimits(per_ip=0.001, per_key=0.001, burst=1)
    a, b = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
    assert limits.check(a, b"Bearer k")[0] == ""
    assert limits.check(a, b"Bearer other")[0] == "ip"  # "other" keeps its token
    assert limits.check(b, b"Bearer other")[0] == ""
    assert limits.check(b, b"Bearer k")[0] == "ip"
    assert limits.check(ipaddress.ip_address("192.0.2.3"), b"Bearer k")[0] == "key"
    assert limits.check(ipaddress.ip_address("192.0.2.3"), None)[0] == ""  # its IP token kept
    assert not RateLimits(0, 0, 20)


def test_refusals_become_one_frame_per_reason_and_name_with_the_last_time() -> None:
    refusals = Refusals()
    for n, (reason, name) in enumerate(
        [("blocked", "10.0.0.0/8"), ("rate_limited", "ip"), ("blocked", "10.0.0.0/8")]
    ):
        refusals.add(reason, name, 1_000 + n)
    decoded = []
    for data in refusals.take_frames():
        magic, kind, received_us, _, _ = spool.HEADER.unpack_from(data)
        assert (magic, kind) == (spool.MAGIC, spool.DECLINED)
        decoded.append((received_us, json.loads(data[spool.HEADER.size :])))
    assert sorted(decoded) == [
        (1_001, [{"stream": COLLECTOR_STREAM, "reason": "rate_limited", "name": "ip", "count": 1}]),
        (
            1_002,
            [{"stream": COLLECTOR_STREAM, "reason": "blocked", "name": "10.0.0.0/8", "count": 2}],
        ),
    ]
    assert not refusals
    assert refusals.take_frames() == []
    assert refusals.total == 3
