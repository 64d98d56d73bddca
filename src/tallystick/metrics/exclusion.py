"""What every analysis leaves out: private streams the reader may not see, bot traffic (unless
asked for) and quarantined data.

It applies where an analysis reads the lake, before anything else (de-duplication, the date
range, filters): the engine's source relation becomes ::

    (SELECT * FROM <source>
     WHERE (stream IS NULL OR NOT stream IN ('p1', 'p2'))           -- hidden streams, if any
       AND NOT coalesce(agent_is_bot, FALSE)                        -- unless include_bots
       AND (event_id, name) NOT IN (SELECT event_id, name FROM <source>
                                    WHERE <rule 1> OR <rule 2> ...)) AS lake

* Hidden streams (``control.principal.Principal.hidden``: the private streams the request's
  key is not granted) are left out row by row: the copies stored for them go, the copies of
  the same event stored for a stream the reader sees stay (and count once, as always). Rows
  without a stream (imported, or written before streams) stay.
* Bots are left out row by row: ``agent.is_bot`` is set by the collector from the request's
  user agent, the same on every copy of an event. Rows without it (written before bot
  detection, or with it turned off) count.
* A quarantine rule leaves out whole events: when any stored copy of an event matches, every
  copy goes. A stream whose ``keep`` list drops ``user`` stores copies without ``user.id``;
  matching row by row would let such a copy stand in for the excluded one. For the same
  reason the rules match every stored copy, those of hidden streams included: an event
  quarantined for one reader is quarantined for all.
* A ``where`` rule compares the field as analyses' filters do (``sql.filter_condition``); an
  ``ip`` rule compares the stored network (``sql.in_network``); a time-bounded rule also needs
  ``time_from <= client_ts < time_to``.

No hidden streams, no rules and ``include_bots``: the source is read as it is. The SQL is
dialect-neutral, so DuckDB, chDB and a ClickHouse server apply the same exclusion; the golden
SQL of the analyses (``tests/metrics/golden``) is built over a plain table and does not show it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from sqlglot import exp

from tallystick.control.quarantine import Rule, rules_key
from tallystick.metrics.params import Filter
from tallystick.metrics.sql import col, filter_condition, in_network, instant, is_in


@dataclass(frozen=True, slots=True)
class Exclusion:
    """What one analysis run leaves out."""

    include_bots: bool = False
    rules: tuple[Rule, ...] = ()
    hidden_streams: frozenset[str] = frozenset()
    """Streams whose rows are left out (private streams the reader is not granted)."""

    def key(self) -> Hashable:
        """Equal for two exclusions that leave out the same rows (for answer caches)."""
        return (self.include_bots, rules_key(self.rules), tuple(sorted(self.hidden_streams)))

    def describe(self) -> str:
        """In words: ``1 private stream, bots and 2 quarantine rules excluded`` (private
        streams are counted, never named)."""
        parts = [] if self.include_bots else ["bots"]
        if self.hidden_streams:
            n = len(self.hidden_streams)
            parts.insert(0, f"{n} private stream{'s' if n != 1 else ''}")
        if self.rules:
            n = len(self.rules)
            parts.append(f"{n} quarantine rule{'s' if n != 1 else ''}")
        if not parts:
            return "nothing excluded (bots included)"
        if len(parts) > 2:
            return ", ".join(parts[:-1]) + " and " + parts[-1] + " excluded"
        return " and ".join(parts) + " excluded"


def rule_condition(rule: Rule) -> exp.Expr:
    """True for a lake row ``rule`` matches (NULL or false otherwise)."""
    if rule.kind == "ip":
        net = rule.network
        match = in_network(
            col("geo_network"), net.version, str(net.network_address), str(net.broadcast_address)
        )
    else:
        match = filter_condition(Filter(rule.path, "=", (rule.value,)))
    conditions = [match]
    if rule.time_from is not None:
        conditions.append(exp.GTE(this=col("client_ts"), expression=instant(rule.time_from)))
    if rule.time_to is not None:
        conditions.append(exp.LT(this=col("client_ts"), expression=instant(rule.time_to)))
    return exp.and_(*conditions) if len(conditions) > 1 else match


def matched(rules: Sequence[Rule]) -> exp.Expr:
    """True for a lake row any of ``rules`` matches."""
    conditions = [exp.paren(rule_condition(r), copy=False) for r in rules]
    return exp.or_(*conditions) if len(conditions) > 1 else conditions[0]


def quarantined_keys(source: exp.Expr, rules: Sequence[Rule]) -> exp.Select:
    """``SELECT event_id, name FROM source WHERE <any rule matches>``: the events to leave
    out."""
    return (
        exp.select(col("event_id"), col("name"))
        .from_(source)
        .where(
            exp.and_(
                exp.Not(this=exp.Is(this=col("event_id"), expression=exp.Null())), matched(rules)
            )
        )
    )


def visible(streams: frozenset[str]) -> exp.Expr:
    """True for a lake row not stored for one of ``streams`` (rows without a stream
    included)."""
    stream = col("stream")
    hidden = is_in(stream, sorted(streams))
    return exp.or_(exp.Is(this=stream, expression=exp.Null()), exp.Not(this=hidden))


def apply(source: exp.Expr, exclusion: Exclusion) -> exp.Expr:
    """``source`` (the engine's relation of lake rows) without what ``exclusion`` leaves out."""
    conditions: list[exp.Expr] = []
    if exclusion.hidden_streams:
        conditions.append(exp.paren(visible(exclusion.hidden_streams), copy=False))
    if not exclusion.include_bots:
        bot = exp.Coalesce(this=col("agent_is_bot"), expressions=[exp.false()])
        conditions.append(exp.Not(this=bot))
    if exclusion.rules:
        keys = quarantined_keys(source.copy(), exclusion.rules)
        pair = exp.Tuple(expressions=[col("event_id"), col("name")])
        conditions.append(exp.Not(this=exp.In(this=pair, query=keys.subquery())))
    if not conditions:
        return source
    query = exp.select("*").from_(source).where(exp.and_(*conditions))
    return query.subquery("lake")
