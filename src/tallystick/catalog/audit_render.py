"""The audit report as Markdown, as one self-contained HTML page, or as JSON (pure).

Every format shows every section, in the same order, with its count, its one-line "why it
matters / what to do", and its rows; an empty section says "Nothing found.". The HTML page has
its style inline and no scripts, so it can be mailed, attached to a ticket or opened offline.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Final

from tallystick.catalog.audit import TITLE, Report, Section, Value

FORMATS: Final = ("md", "html", "json")
NOTHING: Final = "Nothing found."


def text(value: Value) -> str:
    """A cell as text: numbers without needless decimals, nothing as a dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def _summary_line(report: Report) -> str:
    busy = sum(1 for s in report.sections if s.count)
    return (
        f"{report.total} item{'s' if report.total != 1 else ''} in {busy} of "
        f"{len(report.sections)} sections"
    )


def _meta(report: Report) -> str:
    audited = f" of {report.source}" if report.source else ""
    return (
        f"Audit{audited} as of {report.today.isoformat()} "
        f"(generated {report.generated_at:%Y-%m-%d %H:%M} UTC): {_summary_line(report)}."
    )


# -- Markdown ----------------------------------------------------------------------------------


def _md_cell(value: Value) -> str:
    return text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_section(number: int, section: Section) -> list[str]:
    lines = [f"## {number}. {section.title} ({section.count})", "", f"*{section.why}*", ""]
    if section.rows:
        lines.append("| " + " | ".join(section.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in section.columns) + "|")
        for row in section.rows:
            lines.append("| " + " | ".join(_md_cell(row.get(c)) for c in section.columns) + " |")
    else:
        lines.append(NOTHING)
    if section.note:
        lines += ["", section.note]
    lines.append("")
    return lines


def markdown(report: Report) -> str:
    lines = [f"# {TITLE}", "", _meta(report), ""]
    lines += ["| section | items |", "| --- | ---: |"]
    lines += [f"| {n}. {s.title} | {s.count} |" for n, s in enumerate(report.sections, 1)]
    lines.append("")
    for number, section in enumerate(report.sections, 1):
        lines += _md_section(number, section)
    return "\n".join(lines)


# -- HTML --------------------------------------------------------------------------------------

_CSS: Final = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
  margin: 2rem auto; max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .25rem; }
.meta, .why { color: #4a5468; }
.why { margin: .25rem 0 .75rem; }
.count { display: inline-block; min-width: 1.6em; padding: 0 .4em; border-radius: .8em;
  background: #b3261e; color: #fff; text-align: center; font-size: .9rem; }
.count.zero { background: #2e7d32; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { border-bottom: 1px solid #dde1ea; padding: .35rem .5rem; text-align: left;
  vertical-align: top; }
th { background: #f3f5f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.nothing { color: #2e7d32; }
.note { color: #4a5468; font-style: italic; }
nav ol { columns: 2; }
"""


def _h(value: str) -> str:
    return html.escape(value, quote=True)


def _html_section(number: int, section: Section) -> list[str]:
    zero = " zero" if not section.count else ""
    out = [
        f'<section id="{_h(section.key)}">',
        f'<h2>{number}. {_h(section.title)} <span class="count{zero}">{section.count}</span></h2>',
        f'<p class="why">{_h(section.why)}</p>',
    ]
    if section.rows:
        out.append("<table><thead><tr>")
        out += [f'<th scope="col">{_h(c)}</th>' for c in section.columns]
        out.append("</tr></thead><tbody>")
        for row in section.rows:
            cells = []
            for column in section.columns:
                value = row.get(column)
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                css = ' class="num"' if numeric else ""
                cells.append(f"<td{css}>{_h(text(value))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    else:
        out.append(f'<p class="nothing">{NOTHING}</p>')
    if section.note:
        out.append(f'<p class="note">{_h(section.note)}</p>')
    out.append("</section>")
    return out


def html_page(report: Report) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(TITLE)} — {report.today.isoformat()}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{_h(TITLE)}</h1>",
        f'<p class="meta">{_h(_meta(report))}</p>',
        "<nav><ol>",
    ]
    out += [
        f'<li><a href="#{_h(s.key)}">{_h(s.title)}</a> ({s.count})</li>' for s in report.sections
    ]
    out.append("</ol></nav>")
    for number, section in enumerate(report.sections, 1):
        out += _html_section(number, section)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- JSON --------------------------------------------------------------------------------------


def json_text(report: Report) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2) + "\n"


RENDERERS: Final[dict[str, Callable[[Report], str]]] = {
    "md": markdown,
    "html": html_page,
    "json": json_text,
}


def render(report: Report, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](report)
