"""The docs stay honest: every command, option, setting, route, error code and event field that
exists is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from tallystick import messages
from tallystick.cli import app
from tallystick.collect.app import ENDPOINTS
from tallystick.config import config_keys, env_name
from tallystick.dashboard.pages import PAGES, Page
from tallystick.schema import FIELDS

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = DOCS.parent / "README.md"
#: where the HTTP routes are documented
ROUTE_DOCS = ("collector.md", "http-api.md", "dashboard.md")


def _commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        if hasattr(cmd, "list_commands"):
            ctx = cmd.context_class(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*prefix, name])
        else:
            opts = [
                o
                for p in cmd.params
                for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]
                if o.startswith("--") and o != "--help"
            ]
            found.append((" ".join(prefix), opts))

    walk(typer.main.get_command(app), ["tally"])
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(("command", "options"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_every_command_and_option_is_in_the_cli_reference(command: str, options: list[str]) -> None:
    text = (DOCS / "cli.md").read_text()
    assert f"## `{command}" in text, f"{command} has no section in docs/cli.md"
    section = text.split(f"## `{command}", 1)[1].split("\n## ", 1)[0]
    for option in options:
        assert f"`{option}" in section, f"{command} {option} is not documented in docs/cli.md"


@pytest.mark.parametrize("key", config_keys())
def test_every_setting_is_documented(key: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    assert f"`{key}`" in text
    assert env_name(key) in text


@pytest.mark.parametrize("code", messages.CODES)
def test_every_error_code_is_documented(code: str) -> None:
    if code == messages.INVALID_ROW:
        assert code in (DOCS / "import-export.md").read_text()
    else:
        assert f"`{code}`" in (DOCS / "collector.md").read_text()


@pytest.mark.parametrize("route", list(ENDPOINTS))
def test_every_route_is_documented(route: str) -> None:
    method, path = route.split()
    text = "\n".join((DOCS / name).read_text() for name in ROUTE_DOCS)
    # a path parameter may be written {name} or <name>
    where = re.sub(r"\\\{(\w+)\\\}", r"[{<]\1[}>]", re.escape(path))
    assert re.search(rf"`{method} {where}|{method} `?{where}", text), route


@pytest.mark.parametrize("page", PAGES, ids=[p.slug for p in PAGES])
def test_every_dashboard_page_is_documented(page: Page) -> None:
    text = (DOCS / "dashboard.md").read_text()
    assert f"| {page.title} | `{page.path}` |" in text
    for key in page.params:
        assert f"`{key}`" in text, key


def test_dashboard_screenshots_in_the_docs_exist() -> None:
    text = (DOCS / "dashboard.md").read_text()
    images = re.findall(r"\]\((images/[^)]+)\)", text)
    assert len(images) >= len(PAGES)
    for image in images:
        assert (DOCS / image).is_file(), image


@pytest.mark.parametrize("field", FIELDS, ids=[f.path for f in FIELDS])
def test_every_event_field_is_documented(field: Any) -> None:
    text = (DOCS / "event-schema.md").read_text()
    assert f"| `{field.path}` | `{field.column}` |" in text


def test_readme_quickstart_is_two_commands() -> None:
    text = README.read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quickstart.splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (DOCS.parent / ".ci" / "run").read_text()


def test_docs_link_to_files_that_exist() -> None:
    for page in [README, *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+\.md)", page.read_text()):
            if target.startswith("../shared"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
