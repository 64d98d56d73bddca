"""The audit report rendered as Markdown, HTML and JSON: every section, counts, empty sections,
escaping, and an HTML page that stands alone (inline style, no scripts, nothing fetched)."""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser

import pytest

from tallystick.catalog.audit import Report, Section, Value
from tallystick.catalog.audit_render import NOTHING, html_page, markdown, render, text

HOSTILE = "<script>alert('x')</script> | a\nb"
REPORT = Report(
    today=dt.date(2026, 3, 16),
    generated_at=dt.datetime(2026, 3, 16, 9, 30, tzinfo=dt.UTC),
    source="/srv/tally",
    sections=(
        Section(
            "undeclared_events",
            "Undeclared events",
            "Route them or stop sending them.",
            ("event", "events", "ask"),
            (
                {"event": "debug.oops", "events": 1234, "ask": "web@x.org"},
                {"event": HOSTILE, "events": None, "ask": "a & b"},
            ),
        ),
        Section(
            "expensive_metrics",
            "The most expensive metrics",
            "Materialise them.",
            ("metric", "mean seconds"),
            note="No query times recorded yet.",
        ),
    ),
)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        ("", "—"),
        ("text", "text"),
        (1234567, "1,234,567"),
        (0, "0"),
        (2.0, "2"),
        (0.5, "0.5"),
        (9.0909, "9.091"),
        (1234.25, "1,234.25"),
    ],
)
def test_cells(value: Value, shown: str) -> None:
    assert text(value) == shown


def test_markdown_has_every_section_with_count_why_and_rows() -> None:
    md = markdown(REPORT)
    assert md.startswith("# Audit and gap report\n")
    assert "Audit of /srv/tally as of 2026-03-16 (generated 2026-03-16 09:30 UTC): " in md
    assert "2 items in 1 of 2 sections." in md
    assert "| 1. Undeclared events | 2 |" in md
    assert "| 2. The most expensive metrics | 0 |" in md
    assert "## 1. Undeclared events (2)\n\n*Route them or stop sending them.*\n" in md
    assert "| debug.oops | 1,234 | web@x.org |" in md
    # a cell never breaks the table: pipes escaped, newlines folded
    assert "| <script>alert('x')</script> \\| a b | — | a & b |" in md
    empty = md.split("## 2. The most expensive metrics (0)", 1)[1]
    assert f"*Materialise them.*\n\n{NOTHING}\n\nNo query times recorded yet." in empty


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def test_html_stands_alone_without_scripts() -> None:
    page = html_page(REPORT)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    assert "script" not in parsed.tags
    assert parsed.tags.count("style") == 1
    assert not {"link", "img", "iframe", "object"} & set(parsed.tags)
    assert not [a for a, _ in parsed.attrs if a == "src" or a.startswith("on")]
    assert [v for a, v in parsed.attrs if a == "id"] == ["undeclared_events", "expensive_metrics"]
    # the hostile cell is text, shown as written
    assert HOSTILE in "".join(parsed.texts)
    assert parsed.tags.count("tr") == 3  # a header and two rows; the empty section has no table
    assert NOTHING in parsed.texts
    assert '<td class="num">1,234</td>' in page


def test_json_is_the_report_as_data() -> None:
    data = json.loads(render(REPORT, "json"))
    assert data == json.loads(json.dumps(REPORT.as_dict()))
    assert data["total"] == 2
    assert [(s["key"], s["count"]) for s in data["sections"]] == [
        ("undeclared_events", 2),
        ("expensive_metrics", 0),
    ]
    assert data["sections"][0]["rows"][1] == {"event": HOSTILE, "events": None, "ask": "a & b"}
    assert data["sections"][1]["rows"] == []
    assert data["generated_at"] == "2026-03-16T09:30:00Z"


def test_render_refuses_an_unknown_format() -> None:
    assert render(REPORT, "md") == markdown(REPORT)
    with pytest.raises(ValueError, match="use one of md, html, json"):
        render(REPORT, "pdf")
