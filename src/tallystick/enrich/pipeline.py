"""The loader's enrichment of decoded events, in a documented order (docs/enrichment.md):

1. **user agent** — the event's ``agent.user_agent``, else the request's ``User-Agent`` header
   when a browser sent it (from the spool frame's ``RequestContext``; starts with ``Mozilla/``;
   a library's or SDK's header, no header, or a frame from before request contexts: unknown),
   is parsed into ``agent.browser``, ``browser_version``, ``os``, ``os_version`` and
   ``device`` (``enrich_user_agent``);
2. **bots** — the same string is checked against the crawler list and the automation markers
   → ``agent.is_bot`` (``enrich_bots``);
3. **raw user agent** — dropped when the stream does not keep ``agent.user_agent`` (the
   request's ``keep_user_agent``); the header itself is never stored;
4. **geo** — ``geo.country``, ``region`` and ``network``, which the collector derived from the
   client's address (then discarded it), are copied from the request context (``enrich_geo``);
5. **clock** — ``clock_skew_ms`` = ``received_ts − sent_ts``; beyond the threshold ``client_ts``
   is shifted by it and the client's reading kept in ``client_ts_original`` (``enrich_clock``).
   Before sessions, which order events by that time, and before the lake partitions by it;
6. **sessions** — inferred ``session.id`` for events without one, ``session.inferred``, and
   ``page.previous_pageview_id`` (``enrich_sessions``; see ``enrich.sessions``).

Everything is vectorised over the batch's Arrow table except sessions (a loop over the rows that
have a key), and user agents are parsed once per distinct string. A step that is switched off
leaves its columns null. Each written file records what enriched it (package versions of the
rules and the crawler list, steps, thresholds) in its Parquet key-value metadata under
``tallystick.enrichment``: bot shares move when the list updates, and people will ask why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from tallystick.config import Settings
from tallystick.enrich.agents import AgentParser, versions
from tallystick.enrich.sessions import Pending, SessionStore, Sorted
from tallystick.store.spool import RequestContext

log = logging.getLogger("tallystick.enrich")

METADATA_KEY: Final = b"tallystick.enrichment"
STATE_FILE: Final = Path("state") / "sessions.json"
_US: Final = 1_000_000


@cache
def shared_agent_parser() -> AgentParser:
    """One parser per process: its rules take ~0.7 s to compile and its cache is worth sharing."""
    return AgentParser()


@dataclass(frozen=True, slots=True)
class Steps:
    user_agent: bool
    bots: bool
    geo: bool
    clock: bool
    sessions: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Steps:
        return cls(
            settings.enrich_user_agent,
            settings.enrich_bots,
            settings.enrich_geo,
            settings.enrich_clock,
            settings.enrich_sessions,
        )

    def names(self) -> list[str]:
        return [
            name
            for name in ("user_agent", "bots", "geo", "clock", "sessions")
            if getattr(self, name)
        ]


@dataclass(slots=True)
class Enriched:
    """An enriched batch; ``commit()`` once it is safely in the lake (saves the session state)."""

    table: pa.Table
    pending: Pending | None
    _commit: Callable[[Pending], None] | None

    def commit(self) -> None:
        if self.pending is not None and self._commit is not None:
            self._commit(self.pending)
            self.pending = None


class Enricher:
    """Built once per loader process; ``apply`` enriches one batch."""

    def __init__(
        self,
        settings: Settings,
        *,
        agents: AgentParser | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.steps = Steps.from_settings(settings)
        self.agents: AgentParser | None = None
        if self.steps.user_agent or self.steps.bots:
            self.agents = agents if agents is not None else shared_agent_parser()
        self.threshold_us = round(settings.clock_skew_threshold_seconds * _US)
        self.timeout_us = round(settings.session_timeout_minutes * 60 * _US)
        self.sessions: SessionStore | None = None
        if self.steps.sessions:
            path = state_path if state_path is not None else settings.data / STATE_FILE
            self.sessions = SessionStore(path, self.timeout_us)
        description: dict[str, Any] = {"steps": self.steps.names()}
        if self.agents is not None:
            description |= {
                "packages": versions(),
                "parser": self.agents.backend,
                "bot_matcher": self.agents.bots.backend,
            }
        if self.steps.clock:
            description["clock_skew_threshold_seconds"] = settings.clock_skew_threshold_seconds
        if self.steps.sessions:
            description["session_timeout_minutes"] = settings.session_timeout_minutes
        self.description = description

    def apply(
        self,
        table: pa.Table,
        frames: pa.Array,
        contexts: Sequence[RequestContext | None],
    ) -> Enriched:
        """Enrich ``table`` (the lake's columns; ``frames[i]`` is the index in ``contexts`` of
        row ``i``'s request, ``None`` for frames written without one)."""
        columns = {name: table[name] for name in table.column_names}
        if table.num_rows:
            ctx = _ContextColumns(contexts, frames)
            if self.agents is not None:
                self._agents(columns, ctx)
            if self.steps.geo:
                columns["geo_country"] = ctx.take("country")
                columns["geo_region"] = ctx.take("region")
                columns["geo_network"] = ctx.take("network")
            if self.steps.clock:
                self._clock(columns)
        pending = None
        if self.sessions is not None and table.num_rows:
            pending = self._sessions(columns, _ContextColumns(contexts, frames))
        out = pa.Table.from_arrays([columns[f.name] for f in table.schema], schema=table.schema)
        out = out.replace_schema_metadata({METADATA_KEY: json.dumps([self.description]).encode()})
        return Enriched(out, pending, self.sessions.commit if self.sessions is not None else None)

    # -- steps ---------------------------------------------------------------------------------

    def _agents(self, columns: dict[str, Any], ctx: _ContextColumns) -> None:
        assert self.agents is not None
        own = columns["agent_user_agent"]
        header = ctx.take("user_agent")
        # a header counts only when a browser sent it (every browser's, and every crawler's
        # that poses as one, starts so): an HTTP library's or a server SDK's says nothing of
        # the device an event describes, and its events must not vanish from analyses as bots
        browser_sent = pc.fill_null(pc.starts_with(header, "Mozilla/"), False)
        header = pc.if_else(browser_sent, header, pa.scalar(None, pa.string()))
        has_own = pc.fill_null(pc.not_equal(own, ""), False)
        used = pc.if_else(has_own, own, header)
        encoded = (
            pc.dictionary_encode(used).combine_chunks()
            if isinstance(used, pa.ChunkedArray)
            else pc.dictionary_encode(used)
        )
        infos = [self.agents(ua) for ua in encoded.dictionary.to_pylist()]

        def spread(values: list[Any], kind: pa.DataType) -> pa.Array:
            return pc.take(pa.array(values, kind), encoded.indices)

        if self.steps.user_agent:
            columns["agent_browser"] = spread([i.browser for i in infos], pa.string())
            columns["agent_browser_version"] = spread(
                [i.browser_version for i in infos], pa.string()
            )
            columns["agent_os"] = spread([i.os for i in infos], pa.string())
            columns["agent_os_version"] = spread([i.os_version for i in infos], pa.string())
            columns["agent_device"] = spread([i.device for i in infos], pa.string())
        if self.steps.bots:
            columns["agent_is_bot"] = spread([i.is_bot for i in infos], pa.bool_())
        keep = ctx.take("keep_user_agent")
        columns["agent_user_agent"] = pc.if_else(keep, own, pa.scalar(None, pa.string()))

    def _clock(self, columns: dict[str, Any]) -> None:
        client, sent, received = columns["client_ts"], columns["sent_ts"], columns["received_ts"]
        skew = pc.cast(pc.subtract(received, sent), pa.int64())  # µs; null without sent_ts
        columns["clock_skew_ms"] = pc.divide(skew, 1000)  # whole ms, rounded toward zero
        beyond = pc.fill_null(pc.greater(pc.abs(skew), self.threshold_us), False)
        shifted = pc.add(client, pc.cast(skew, pa.duration("us")))
        none = pa.scalar(None, client.type)
        columns["client_ts_original"] = pc.if_else(beyond, client, none)
        columns["client_ts"] = pc.if_else(beyond, shifted, client)

    def _sessions(self, columns: dict[str, Any], ctx: _ContextColumns) -> Pending:
        """Keys and sort order are computed in Arrow; only the walk over the sorted rows runs
        in Python (``Sessionizer.assign_sorted``). Copies of streams that do not keep
        ``session.id`` are left alone."""
        assert self.sessions is not None
        given, pageviews = columns["session_id"], columns["page_pageview_id"]
        keys = session_keys(given, columns["user_anonymous_id"], columns["user_id"], pageviews)
        keys = pc.if_else(ctx.take("keep_session"), keys, pa.scalar(None, keys.type))
        index = pc.indices_nonzero(pc.is_valid(keys))
        keyed = pa.table(
            {
                "key": pc.take(keys, index),
                "time": pc.take(pc.cast(columns["client_ts"], pa.int64()), index),
                "received": pc.take(pc.cast(columns["received_ts"], pa.int64()), index),
                "index": index,
            }
        )
        order = pc.sort_indices(keyed, [(name, "ascending") for name in keyed.column_names])
        keyed = keyed.take(order)
        rows = Sorted(
            keyed["key"].to_pylist(),
            keyed["time"].to_pylist(),
            keyed["received"].to_pylist(),
            pc.take(pageviews, keyed["index"]).to_pylist(),
            keyed["index"].to_pylist(),
        )
        sessions, inferred, previous, pending = self.sessions.assign(rows, len(given))
        flags = pa.array(inferred, pa.bool_())
        columns["session_id"] = pc.if_else(flags, pa.array(sessions, pa.string()), given)
        columns["session_inferred"] = flags
        columns["page_previous_pageview_id"] = pa.array(previous, pa.string())
        return pending


def session_keys(given: Any, anonymous: Any, users: Any, pageviews: Any) -> pa.Array:
    """Each row's track key (see ``enrich.sessions``), null for rows sessionization leaves
    alone: ``s:<session id>`` for a client session's page-view events, else ``a:<anonymous
    id>``, else ``u:<user id>``."""

    def present(values: Any) -> Any:
        return pc.fill_null(pc.not_equal(values, ""), False)

    def prefixed(prefix: str, values: Any) -> Any:
        return pc.binary_join_element_wise(prefix, values, "")

    none = pa.scalar(None, pa.string())
    device = pc.if_else(
        present(anonymous),
        prefixed("a:", anonymous),
        pc.if_else(present(users), prefixed("u:", users), none),
    )
    client = pc.if_else(present(pageviews), prefixed("s:", given), none)
    keys = pc.if_else(present(given), client, device)
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


class _ContextColumns:
    """The request contexts of a batch's frames, spread over its rows."""

    def __init__(self, contexts: Sequence[RequestContext | None], frames: pa.Array) -> None:
        self.contexts = contexts
        self.frames = frames

    def take(self, attribute: str) -> pa.Array:
        if attribute in ("keep_user_agent", "keep_session"):
            flags = [True if c is None else getattr(c, attribute) for c in self.contexts]
            return pc.take(pa.array(flags, pa.bool_()), self.frames)
        if attribute == "user_agent":  # a request that named none sent an empty one
            values = [None if c is None else c.user_agent or "" for c in self.contexts]
        else:
            values = [None if c is None else getattr(c, attribute) for c in self.contexts]
        return pc.take(pa.array(values, pa.string()), self.frames)


def enrichment_of(metadata: dict[bytes, bytes] | None) -> list[dict[str, Any]]:
    """What enriched a lake file, from its schema metadata (``[]`` for files written before)."""
    if not metadata or METADATA_KEY not in metadata:
        return []
    value = json.loads(metadata[METADATA_KEY])
    return value if isinstance(value, list) else [value]


def merged_metadata(tables: Sequence[dict[bytes, bytes] | None]) -> dict[bytes, bytes] | None:
    """The enrichment metadata of a file merged from files with ``tables``' metadata: every
    distinct description once, in order (compaction keeps the record)."""
    seen: list[dict[str, Any]] = []
    for metadata in tables:
        for item in enrichment_of(metadata):
            if item not in seen:
                seen.append(item)
    return {METADATA_KEY: json.dumps(seen).encode()} if seen else None
