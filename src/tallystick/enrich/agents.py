"""User-agent parsing and bot detection.

Parsing uses ``ua-parser`` 1.x with the uap-core rules of ``ua-parser-builtins``, matched by the
Rust resolver of ``ua-parser-rs`` (25-30× faster than the pure-Python resolver, which is the
fallback, with a warning, when the Rust wheel is missing). A user agent yields the browser
family and major version, the OS family and major version, and the device family (uap-core's
``Other`` when unknown; ``Spider`` for crawlers it knows).

A user agent is a bot when one of these rules matches, first match wins:

1. a pattern of the ``crawler-user-agents`` list (case-sensitive regular expressions, as the
   list's own ``is_crawler`` applies them);
2. a headless-browser or automation marker (``HEADLESS_MARKERS``: tools the list misses, such as
   ``jsdom``, ``Cypress``, ``undici``, ``Java/…``; an empty or ``-`` user agent). Electron is
   deliberately not a marker: Electron desktop apps (Obsidian, Slack…) are real users;
3. uap-core's device family ``Spider``.

All rules of 1 and 2 are compiled together into one ``ua_parser_rs.UserAgentExtractor`` (Rust's
``regex`` crate; ~5 µs per unseen user agent against ~450 µs for the list's own ``is_crawler``).
That class was written for uap-core's rules, not for this, so a test checks that it agrees with
Python's ``re`` on every instance of the list. Rust's ``regex`` refuses look-around and
back-references: a future list entry using one is matched with Python's ``re`` instead (and
logged); a pattern neither can compile is logged and skipped, never fatal.

Every user agent is cut to ``MAX_UA_CHARS`` before parsing (a 20,000-character string costs 10×
more and no real browser sends one), and results are cached by string (``CACHE_SIZE`` entries):
traffic repeats a few thousand user agents, so almost every event is a cache hit.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal, Protocol

log = logging.getLogger("tallystick.enrich")

MAX_UA_CHARS: Final = 512
CACHE_SIZE: Final = 10_000
CRAWLER_LIST: Final = "crawler-user-agents"
HEADLESS: Final = "headless"
SPIDER: Final = "Spider"

HEADLESS_MARKERS: Final[tuple[str, ...]] = (
    r"HeadlessChrome|PhantomJS|SlimerJS|Puppeteer|Playwright|Selenium|WebDriver|jsdom|Cypress"
    r"|Lighthouse",
    r"(?i)^(?:python-requests|python-httpx|python-urllib|aiohttp|curl|wget|go-http-client"
    r"|node-fetch|axios|undici|okhttp|java/|apache-httpclient|postmanruntime|scrapy|libwww-perl"
    r"|httpie|guzzlehttp)\b",
    r"^\s*-?\s*$",
)
"""Automation the crawler list misses or may drop; the empty and ``-`` user agents (no browser
sends those)."""

Backend = Literal["rust", "python"]


@dataclass(frozen=True, slots=True)
class BotRule:
    """One bot rule: where it comes from and its regular expression."""

    source: str
    pattern: str


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What a user agent says about the client."""

    browser: str
    browser_version: str | None
    os: str
    os_version: str | None
    device: str
    is_bot: bool
    bot_rule: BotRule | None
    """The rule that flagged it (``None`` when not a bot, or flagged by ``device == Spider``)."""


def crawler_rules() -> list[BotRule]:
    """The installed ``crawler-user-agents`` list's patterns, in list order."""
    import crawleruseragents

    return [
        BotRule(CRAWLER_LIST, entry["pattern"])
        for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA
    ]


def bot_rules() -> list[BotRule]:
    """Every pattern rule, in the order they are tried: the crawler list, then the markers."""
    return crawler_rules() + [BotRule(HEADLESS, p) for p in HEADLESS_MARKERS]


def crawler_instances() -> list[str]:
    """The example user agents the crawler list gives for its patterns (its own test corpus)."""
    import crawleruseragents

    return [
        ua
        for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA
        for ua in entry.get("instances", [])
    ]


def versions() -> dict[str, str]:
    """Versions of the packages whose data decide the parsed fields and the bot flag."""
    out = {}
    for package in ("ua-parser", "ua-parser-builtins", "ua-parser-rs", CRAWLER_LIST):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


class BotMatcher(Protocol):
    backend: Backend

    def match(self, ua: str) -> int | None:
        """Index (into the rules) of the first rule that matches ``ua``, or ``None``."""
        ...


class PythonBotMatcher:
    """The rules as Python ``re`` alternations, in chunks (one giant alternation is slower)."""

    backend: Backend = "python"
    CHUNK: Final = 25

    def __init__(self, rules: Sequence[BotRule]) -> None:
        self._compiled: list[tuple[int, re.Pattern[str]]] = []
        for i, rule in enumerate(rules):
            try:
                self._compiled.append((i, re.compile(rule.pattern)))
            except re.error as exc:
                log.error(
                    "bot rule %r (%s) does not compile, skipped: %s", rule.pattern, rule.source, exc
                )
        # Consecutive patterns are joined into alternations of up to CHUNK; a pattern with a
        # back-reference stays alone (joining renumbers its groups).
        self._chunks: list[tuple[re.Pattern[str], list[tuple[int, re.Pattern[str]]]]] = []
        part: list[tuple[int, re.Pattern[str]]] = []
        for item in self._compiled:
            if _BACKREFERENCE.search(item[1].pattern):
                self._add_chunk(part)
                self._chunks.append((item[1], [item]))
                part = []
                continue
            part.append(item)
            if len(part) == self.CHUNK:
                self._add_chunk(part)
                part = []
        self._add_chunk(part)

    def _add_chunk(self, part: list[tuple[int, re.Pattern[str]]]) -> None:
        if not part:
            return
        try:
            joined = re.compile("|".join(f"(?:{_scoped(p.pattern)})" for _, p in part))
        except re.error:  # e.g. an inline flag in the middle of a pattern: try one by one
            self._chunks.extend((p, [(i, p)]) for i, p in part)
            return
        self._chunks.append((joined, list(part)))

    def match(self, ua: str) -> int | None:
        for chunk, part in self._chunks:
            if chunk.search(ua):
                for i, pattern in part:
                    if pattern.search(ua):
                        return i
        return None


_BACKREFERENCE: Final = re.compile(r"\\[1-9]|\(\?P=")


def _scoped(pattern: str) -> str:
    """A pattern with a leading inline flag group (``(?i)…``) rewritten as a scoped one
    (``(?i:…)``), so it can sit inside an alternation."""
    m = re.match(r"\(\?([aiLmsux]+)\)", pattern)
    return f"(?{m.group(1)}:{pattern[m.end() :]})" if m else pattern


class RustBotMatcher:
    """The rules compiled into one ``ua_parser_rs.UserAgentExtractor`` (first match wins, which
    gives the rule's index as the "family"). Rules Rust's ``regex`` refuses go to a Python
    matcher tried after it — keeping list order for them is not needed: any match is a bot."""

    backend: Backend = "rust"

    def __init__(self, rules: Sequence[BotRule]) -> None:
        import ua_parser_rs

        self._extractor_type = ua_parser_rs.UserAgentExtractor
        indexed = list(enumerate(rules))
        try:
            self._extractor = self._build(indexed)
            refused: list[tuple[int, BotRule]] = []
        except ValueError:
            accepted, refused = [], []
            for item in indexed:
                try:
                    self._build([item])
                    accepted.append(item)
                except ValueError as exc:
                    refused.append(item)
                    log.warning(
                        "bot rule %r (%s) is not supported by Rust's regex (%s); matching it "
                        "with Python's re",
                        item[1].pattern,
                        item[1].source,
                        str(exc).splitlines()[-1],
                    )
            self._extractor = self._build(accepted)
        self._rest = [(i, PythonBotMatcher([rule])) for i, rule in refused]

    def _build(self, rules: Iterable[tuple[int, BotRule]]) -> object:
        return self._extractor_type((r.pattern, str(i), None, None, None, None) for i, r in rules)

    def match(self, ua: str) -> int | None:
        found = self._extractor.extract(ua)  # type: ignore[attr-defined]
        if found is not None:
            return int(found.family)
        for i, matcher in self._rest:
            if matcher.match(ua) is not None:
                return i
        return None


def bot_matcher(rules: Sequence[BotRule], *, prefer_rust: bool = True) -> BotMatcher:
    """The Rust matcher when ``ua-parser-rs`` is importable, else the Python one (logged)."""
    if prefer_rust:
        try:
            return RustBotMatcher(rules)
        except ImportError:
            log.warning(
                "ua-parser-rs is not installed: bot detection runs on Python's re (~100× slower "
                "per new user agent); install ua-parser[regex]"
            )
    return PythonBotMatcher(rules)


class AgentParser:
    """Parses user agents and flags bots; build one per process (~0.7 s: the rules compile)."""

    def __init__(self, *, prefer_rust: bool = True, cache_size: int = CACHE_SIZE) -> None:
        from ua_parser import BasicResolver, Parser, load_builtins, load_lazy_builtins

        self.backend: Backend
        try:
            if not prefer_rust:
                raise ImportError("the pure-Python resolver was asked for")
            from ua_parser.regex import Resolver

            self._parser = Parser(Resolver(load_lazy_builtins()))
            self.backend = "rust"
        except ImportError as exc:
            if prefer_rust:
                log.warning(
                    "ua-parser-rs is not available (%s): user agents are parsed in pure Python "
                    "(~1.5 ms per new user agent); install ua-parser[regex]",
                    exc,
                )
            self._parser = Parser(BasicResolver(load_builtins()))
            self.backend = "python"
        self.rules = bot_rules()
        self.bots = bot_matcher(self.rules, prefer_rust=prefer_rust)
        self.info = lru_cache(maxsize=cache_size)(self._info)
        """``info(ua)``: the cached ``AgentInfo`` of a user agent (cut to ``MAX_UA_CHARS``)."""

    def __call__(self, ua: str) -> AgentInfo:
        return self.info(ua[:MAX_UA_CHARS])

    def _info(self, ua: str) -> AgentInfo:
        ua = ua[:MAX_UA_CHARS]
        result = self._parser.parse(ua).with_defaults()
        rule_index = self.bots.match(ua)
        rule = self.rules[rule_index] if rule_index is not None else None
        device = result.device.family
        return AgentInfo(
            browser=result.user_agent.family,
            browser_version=result.user_agent.major,
            os=result.os.family,
            os_version=result.os.major,
            device=device,
            is_bot=rule is not None or device == SPIDER,
            bot_rule=rule,
        )

    def is_bot(self, ua: str) -> bool:
        return self(ua).is_bot
