"""The collector's view of the control plane: one immutable snapshot, applied per event (pure).

``Controls.build`` compiles a version of the configuration (streams, the unrouted stream) into a
router; ``place`` decides, for one event received at a given time, which streams store it and
what each stream stores: the event as sent (``None``, the common case, so the collector can
store the bytes it received) or a copy without the attributes the stream does not keep and with
the sample rate it was kept at. One exception: ``agent.user_agent`` stays in copies of streams
that do not keep it, for the loader to parse before it drops it (``drops_user_agent``). The
snapshot also carries the active IP blocks. The collector swaps the whole snapshot when the
configuration's version changes, so one request never sees half of two configurations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tallystick.control.blocks import Block, Blocklist
from tallystick.control.curation import drops
from tallystick.control.definitions import CONTEXT_GROUPS, Stream
from tallystick.control.routing import UNROUTED, Router
from tallystick.control.sampling import point, threshold, unit_id

DECLINED: Final = ("disabled", "scheduled", "expired", "curated", "sampled_out", "deleted_user")
"""Why a stream an event is routed to did not store it: switched off, not started yet, expired,
a curation rule matched, its unit was not in the sample, or its user was deleted
(``control.deletions``)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """One stream's copy of an event: ``event`` is None when the stream stores it as sent."""

    stream: str
    event: dict[str, Any] | None


def kept_attributes(event: Mapping[str, Any], keep: Iterable[str]) -> dict[str, Any]:
    """``event`` without the contextual attributes that ``keep`` does not list (a group such as
    ``page`` keeps all of it; ``page.url`` keeps only that field of ``page``)."""
    groups: set[str] = set()
    leaves: dict[str, set[str]] = {}
    for attribute in keep:
        group, _, leaf = attribute.partition(".")
        if leaf:
            leaves.setdefault(group, set()).add(leaf)
        else:
            groups.add(group)
    out: dict[str, Any] = {}
    for key, value in event.items():
        if key not in CONTEXT_GROUPS or key in groups:
            out[key] = value
        elif key in leaves and isinstance(value, Mapping):
            part = {k: v for k, v in value.items() if k in leaves[key]}
            if part:
                out[key] = part
    return out


def keeps_user_agent(keep: Iterable[str]) -> bool:
    """Whether a ``keep`` list keeps ``agent.user_agent`` (the ``agent`` group, or the field)."""
    return any(k in ("agent", "agent.user_agent") for k in keep)


def keeps_session(keep: Iterable[str]) -> bool:
    """Whether a ``keep`` list keeps ``session.id`` (the ``session`` group, or the field)."""
    return any(k in ("session", "session.id") for k in keep)


def _restore_user_agent(source: Mapping[str, Any], copy: dict[str, Any]) -> None:
    """Put ``agent.user_agent`` of ``source`` back into a narrowed ``copy``."""
    agent = source.get("agent")
    if isinstance(agent, Mapping) and agent.get("user_agent") is not None:
        kept = copy.get("agent")
        copy["agent"] = {
            **(kept if isinstance(kept, Mapping) else {}),
            "user_agent": agent["user_agent"],
        }


def _combined_sample(event: Mapping[str, Any], stream: Stream) -> dict[str, Any]:
    """The sample record of an event kept by a sampled stream. An event the client sampled
    already was kept with both probabilities: the smaller one when both sampled the same unit
    (samples of one unit nest), their product when they sampled different units (independent)."""
    assert stream.sample is not None
    rate = stream.sample.rate
    sent = event.get("sample")
    if isinstance(sent, Mapping) and isinstance(sent.get("rate"), int | float):
        client_rate = float(sent["rate"])
        rate = (
            min(rate, client_rate) if sent.get("unit") == stream.sample.unit else rate * client_rate
        )
    return {"unit": stream.sample.unit, "rate": rate}


@dataclass(frozen=True, slots=True)
class Controls:
    """A compiled version of the configuration."""

    version: int
    streams: Mapping[str, Stream]
    router: Router
    blocks: Blocklist = dataclasses.field(default_factory=Blocklist)
    """The active IP blocks (``control.blocks``): requests from them are refused."""
    drops_user_agent: frozenset[str] = frozenset()
    """Streams whose ``keep`` leaves ``agent.user_agent`` out. Their copies keep it all the same,
    for the loader to parse (browser, OS, bots) before it drops the raw string (the spool frame
    says so: ``RequestContext.keep_user_agent``)."""
    drops_session: frozenset[str] = frozenset()
    """Streams whose ``keep`` leaves ``session.id`` out: the loader does not infer sessions for
    their copies (``RequestContext.keep_session``)."""
    suppressed: frozenset[str] = frozenset()
    """Keyed hashes of deleted users' ids (``control.deletions``): their events are dropped."""
    _routes: dict[str, tuple[str, ...]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )
    """Each event name's streams, filled as names arrive (a product has few names)."""
    _thresholds: dict[str, int] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        version: int,
        streams: Iterable[Stream],
        unrouted: str = UNROUTED,
        blocks: Iterable[Block] = (),
        suppressed: Iterable[str] = (),
    ) -> Controls:
        by_name = {s.name: s for s in streams}
        router = Router.build({s.name: s.events for s in by_name.values()}, fallback=unrouted)
        thresholds = {
            s.name: threshold(s.sample.rate)
            for s in by_name.values()
            if s.sample is not None and s.sample.rate < 1
        }
        drops = frozenset(
            s.name for s in by_name.values() if s.keep is not None and not keeps_user_agent(s.keep)
        )
        no_session = frozenset(
            s.name for s in by_name.values() if s.keep is not None and not keeps_session(s.keep)
        )
        return cls(
            version,
            by_name,
            router,
            Blocklist(blocks),
            drops,
            no_session,
            frozenset(suppressed),
            {},
            thresholds,
        )

    def routes(self, name: str) -> tuple[str, ...]:
        found = self._routes.get(name)
        if found is None:
            found = self.router.streams(name)
            if len(self._routes) < 10_000:  # names are validated, but never trust a vocabulary
                self._routes[name] = found
        return found

    @property
    def unrouted(self) -> str:
        return self.router.fallback

    @property
    def by_name_only(self) -> bool:
        """No stream curates, samples or narrows what it keeps: an event's name decides."""
        return all(
            not s.curation and (s.sample is None or s.sample.rate >= 1) and s.keep is None
            for s in self.streams.values()
        )

    @property
    def passthrough(self) -> bool:
        """No streams: every event goes, as sent, to the unrouted stream."""
        return not self.streams

    def place(
        self,
        event: Mapping[str, Any],
        at: dt.datetime,
        declined: Counter[tuple[str, str, str]] | None = None,
    ) -> list[Placement]:
        """Where ``event`` (its JSON as a mapping) is stored, received at ``at``. Empty when every
        stream it is routed to is disabled, expired, not started, curates it out or samples it
        out; each such stream is counted in ``declined`` as (stream, reason, event name), with
        the reasons of ``DECLINED``."""
        name = event.get("name")
        targets = self.routes(name) if isinstance(name, str) else (self.unrouted,)
        placed: list[Placement] = []
        for target in targets:
            stream = self.streams.get(target)
            if stream is None:  # the unrouted stream: everything, as sent
                placed.append(Placement(target, None))
                continue
            status = stream.status(at)
            if status != "collecting" or drops(stream.curation, event):
                if declined is not None:
                    reason = "curated" if status == "collecting" else status
                    declined[(target, reason, str(name))] += 1
                continue
            copy: dict[str, Any] | None = None
            limit = self._thresholds.get(target)
            if limit is not None and stream.sample is not None:
                # an event without the unit's id cannot be sampled: kept, and not re-weighted
                found = unit_id(event, stream.sample.unit)
                if found is not None:
                    if point(stream.sample.unit, found) >= limit:
                        if declined is not None:
                            declined[(target, "sampled_out", str(name))] += 1
                        continue
                    copy = dict(event)
                    copy["sample"] = _combined_sample(event, stream)
            if stream.keep is not None:
                source = copy if copy is not None else event
                copy = kept_attributes(source, stream.keep)
                if target in self.drops_user_agent:
                    _restore_user_agent(source, copy)
            placed.append(Placement(target, copy))
        return placed
