"""Routing: names and prefixes to streams, several streams per event, the fallback."""

from __future__ import annotations

import pytest

from tallystick.control.routing import UNROUTED, RouteError, Router

STREAMS = {
    "signin": ["signin.*"],
    "core": ["project.commit", "dataset.create", "workflow.run"],
    "errors": ["error.shown", "signin.failed"],
    "everything": ["*"],
}


@pytest.mark.parametrize(
    ("name", "streams"),
    [
        ("project.commit", ("core", "everything")),
        ("signin.open", ("signin", "everything")),
        ("signin.failed", ("errors", "signin", "everything")),
        ("page.view", ("everything",)),
    ],
)
def test_an_event_goes_to_every_stream_that_names_it(name: str, streams: tuple[str, ...]) -> None:
    assert Router.build(STREAMS).streams(name) == streams


def test_undeclared_events_go_to_the_fallback() -> None:
    router = Router.build({k: v for k, v in STREAMS.items() if k != "everything"})
    assert router.streams("page.view") == (UNROUTED,)
    assert not router.declared("page.view")
    assert router.declared("signin.open")
    assert Router.build({}, fallback="catch-all").streams("x") == ("catch-all",)


def test_a_prefix_is_a_whole_segment() -> None:
    router = Router.build({"signin": ["signin.*"]})
    assert router.streams("signing.up") == (UNROUTED,)
    assert router.streams("signin.code.verified") == ("signin",)


def test_a_stream_listed_twice_for_a_name_is_named_once() -> None:
    router = Router.build({"a": ["x.y", "x.*", "*"]})
    assert router.streams("x.y") == ("a",)


@pytest.mark.parametrize("selector", ["Signin.open", "signin.", "signin*", "*.open", "", "a..b"])
def test_bad_selectors_are_refused(selector: str) -> None:
    with pytest.raises(RouteError, match="give an event name"):
        Router.build({"s": [selector]})
