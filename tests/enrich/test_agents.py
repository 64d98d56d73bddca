"""User-agent parsing and bot detection: the issue's acceptance corpora, hand-checked parses, and
the Rust-compiled rules agreeing with Python's ``re``."""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

import pytest

from tallystick.enrich.agents import (
    CRAWLER_LIST,
    HEADLESS,
    MAX_UA_CHARS,
    AgentInfo,
    AgentParser,
    BotRule,
    PythonBotMatcher,
    RustBotMatcher,
    bot_rules,
    crawler_instances,
    versions,
)
from tallystick.enrich.pipeline import shared_agent_parser

DATA = Path(__file__).parents[1] / "data" / "useragents"


@cache
def browser_corpus() -> list[str]:
    """The vendored ordinary browser user agents (see tests/data/useragents/README.md)."""
    lines = (DATA / "fake-useragent-browsers.jsonl").read_text().splitlines()
    sample = [json.loads(line)["useragent"] for line in lines]
    top = json.loads((DATA / "top-user-agents.json").read_text())
    return sorted(set(sample) | set(top))


@pytest.fixture(scope="module")
def parser() -> AgentParser:
    return shared_agent_parser()


def test_the_corpora_are_big_enough() -> None:
    assert len(browser_corpus()) >= 200
    assert len(crawler_instances()) >= 1000


def test_acceptance_crawlers_of_the_list_are_flagged(parser: AgentParser) -> None:
    """≥ 99 % of the crawler list's own example user agents are flagged as bots."""
    instances = crawler_instances()
    missed = [ua for ua in instances if not parser.is_bot(ua)]
    assert len(missed) <= 0.01 * len(instances), missed[:20]


def test_acceptance_ordinary_browsers_are_not_flagged(parser: AgentParser) -> None:
    """≤ 0.5 % of ≥ 200 ordinary browser user agents are flagged."""
    corpus = browser_corpus()
    flagged = [(ua, parser(ua).bot_rule) for ua in corpus if parser.is_bot(ua)]
    assert len(flagged) <= 0.005 * len(corpus), flagged


def test_rust_and_python_re_agree_on_every_instance() -> None:
    """The Rust extractor is used for something it was not written for: it must pick the same
    first rule as Python's ``re`` for every list instance and every browser."""
    rules = bot_rules()
    rust, python = RustBotMatcher(rules), PythonBotMatcher(rules)
    corpus = crawler_instances() + browser_corpus() + list(HEADLESS_SAMPLES)
    disagreements = [ua for ua in corpus if rust.match(ua) != python.match(ua)]
    assert disagreements == []


HEADLESS_SAMPLES = {
    # automation the crawler list misses, caught by the markers (or the list)
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36": True,
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
    "PhantomJS/2.1.1 Safari/538.1": True,
    "Mozilla/5.0 (X11; Linux x86_64; rv:102.0) Gecko/20100101 SlimerJS/1.0.0": True,
    "Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/24.0.0": True,
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Cypress/13.6.0 "
    "Chrome/118.0.5993.117 Electron/27.0.3 Safari/537.36": True,
    "undici": True,
    "Java/17.0.2": True,
    "PostmanRuntime/7.36.0": True,
    "python-requests/2.32.3": True,
    "curl/8.5.0": True,
    "Go-http-client/1.1": True,
    "": True,
    "-": True,
    "  ": True,
    # real users, not bots
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "obsidian/1.11.7 Chrome/142.0.7444.59 Electron/39.5.1 Safari/537.36": False,
    "tallystick-python/0.1.0 CPython/3.12.7 Linux-6.8.0-x86_64": False,
}


@pytest.mark.parametrize(("ua", "bot"), HEADLESS_SAMPLES.items())
def test_headless_and_automation_markers(parser: AgentParser, ua: str, bot: bool) -> None:
    assert parser.is_bot(ua) is bot


# Hand-checked against uap-core's rules (ua-parser-builtins 202610).
PARSES = [
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        AgentInfo("Mobile Safari", "17", "iOS", "17", "iPhone", False, None),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        AgentInfo("Chrome", "131", "Windows", "10", "Other", False, None),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0",
        AgentInfo("Firefox", "133", "Mac OS X", "10", "Mac", False, None),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.81 Mobile Safari/537.36",
        AgentInfo("Chrome Mobile", "131", "Android", "14", "Samsung SM-S918B", False, None),
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        AgentInfo(
            "Googlebot", "2", "Other", None, "Spider", True, BotRule(CRAWLER_LIST, r"Googlebot\/")
        ),
    ),
    ("", AgentInfo("Other", None, "Other", None, "Other", True, BotRule(HEADLESS, r"^\s*-?\s*$"))),
]


@pytest.mark.parametrize(("ua", "expected"), PARSES)
def test_hand_checked_parses(parser: AgentParser, ua: str, expected: AgentInfo) -> None:
    assert parser(ua) == expected


def test_the_python_fallbacks_give_the_same_answers(
    parser: AgentParser, caplog: pytest.LogCaptureFixture
) -> None:
    """Without ua-parser-rs everything runs on pure Python: slower, same results."""
    slow = AgentParser(prefer_rust=False)
    assert (slow.backend, slow.bots.backend) == ("python", "python")
    sample = [ua for ua, _ in PARSES] + browser_corpus()[:40] + crawler_instances()[:40]
    assert [slow(ua) for ua in sample] == [parser(ua) for ua in sample]


def test_user_agents_are_cut_before_parsing(parser: AgentParser) -> None:
    browser = PARSES[1][0]
    assert parser(browser + " x" * 10_000) == parser((browser + " x" * 10_000)[:MAX_UA_CHARS])
    # a marker beyond the cut is not seen: the price of bounding the work per string
    assert not parser.is_bot(browser + " " * MAX_UA_CHARS + "HeadlessChrome/1")


def test_a_rule_rust_refuses_is_matched_in_python(caplog: pytest.LogCaptureFixture) -> None:
    rules = [
        BotRule(CRAWLER_LIST, "Googlebot"),
        BotRule(CRAWLER_LIST, "lookahead(?=bot)"),
        BotRule(CRAWLER_LIST, r"(echo)\1"),
        BotRule(CRAWLER_LIST, "fine[Bb]ot"),
    ]
    with caplog.at_level(logging.WARNING, logger="tallystick.enrich"):
        rust = RustBotMatcher(rules)
    assert "lookahead(?=bot)" in caplog.text
    assert [
        rust.match(ua) for ua in ("Googlebot/2", "lookaheadbot", "echoecho", "fineBot", "x")
    ] == [
        0,
        1,
        2,
        3,
        None,
    ]


def test_a_rule_nothing_compiles_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    rules = [BotRule(CRAWLER_LIST, "broken(("), BotRule(CRAWLER_LIST, "okbot")]
    with caplog.at_level(logging.WARNING, logger="tallystick.enrich"):
        rust = RustBotMatcher(rules)
        python = PythonBotMatcher(rules)
    assert "broken((" in caplog.text
    assert rust.match("an okbot") == python.match("an okbot") == 1
    assert rust.match("broken((") is python.match("broken((") is None


def test_results_are_cached_by_string(parser: AgentParser) -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 cache-test"
    parser(ua)
    hits = parser.info.cache_info().hits
    parser(ua)
    assert parser.info.cache_info().hits == hits + 1


def test_versions_name_the_data_packages() -> None:
    found = versions()
    assert found["ua-parser-builtins"].isdigit()
    assert found["crawler-user-agents"].count(".") == 2
