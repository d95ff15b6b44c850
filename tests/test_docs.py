"""README and docs/: links that lead somewhere, a short README, commands that exist.

Pure tests: they read the Markdown files and the command-line parser, no peer.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from qrclient.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 220

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(\n])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_COMMAND = re.compile(r"(?:^|[\s(`$/])qrclient[ \t]+([a-z][a-z-]*)(?:[ \t]+([a-z][a-z-]*))?")


def _code(text: str) -> str:
    """The code blocks and inline code of ``text``: its examples."""
    blocks = [m.group(0) for m in _FENCE.finditer(text)]
    spans = _INLINE_CODE.findall(_FENCE.sub("", text))
    return "\n".join([*blocks, *spans])


def _prose(text: str) -> str:
    """The text outside code blocks and inline code, where links are links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings, numbered as GitHub numbers repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    for match in _HEADING.finditer(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(page: Path) -> list[str]:
    targets = _LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_docs_pages_exist() -> None:
    names = {page.name for page in DOCS}
    expected = {"cli.md", "configuration.md", "api.md", "design.md", "benchmarks.md"}
    expected |= {"security.md", "troubleshooting.md", "tui.md"}
    assert expected <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_to_existing_files_and_headings(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no file {destination}")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target}: no heading with anchor #{anchor} in {destination.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_page_has_links_checked() -> None:
    # The link pattern must find the links README is known to have, else the test above
    # would pass on nothing.
    links = _relative_links(README)
    assert "docs/cli.md" in links
    assert "docs/configuration.md" in links


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to docs/"


def test_readme_names_only_commands_the_cli_has() -> None:
    # The examples of README: qrclient followed by a command word, in code.
    commands = _subcommands(build_parser())
    named = _COMMAND.findall(_code(README.read_text(encoding="utf-8")))
    assert named, "README names no qrclient command"
    unknown = []
    for command, action in named:
        if command not in commands:
            unknown.append(command)
            continue
        actions = _subcommands(commands[command])
        if actions and action and action not in actions:
            unknown.append(f"{command} {action}")
    assert not unknown, f"README names commands the CLI lacks: {sorted(set(unknown))}"


def test_every_command_is_documented_in_cli_md() -> None:
    cli_md = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    headings = {match.group(2) for match in _HEADING.finditer(_FENCE.sub("", cli_md))}
    documented = {word for heading in headings for word in re.findall(r"[a-z][a-z-]*", heading)}
    commands = _subcommands(build_parser())
    missing = sorted(name for name in commands if name not in documented)
    assert not missing, f"docs/cli.md has no section for: {missing}"
    for name, parser in commands.items():
        for action in _subcommands(parser):
            assert f"`{action}" in cli_md or f"|{action}" in cli_md, f"{name} {action}"


def test_every_option_is_documented_in_cli_md() -> None:
    cli_md = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = []
    for name, parser in _subcommands(build_parser()).items():
        for action_name, action_parser in (_subcommands(parser) or {"": parser}).items():
            for action in action_parser._actions:
                for option in action.option_strings:
                    if option not in ("-h", "--help") and f"`{option}" not in cli_md:
                        missing.append(f"{name} {action_name} {option}".replace("  ", " "))
    assert not missing, f"docs/cli.md does not name these options (as `OPTION...`): {missing}"


def test_slugs_follow_github() -> None:
    assert _slug("get, move, retrieve") == "get-move-retrieve"
    assert _slug("Editing with `qrclient nodes`") == "editing-with-qrclient-nodes"
    assert _slug("pynetdicom: the demo PACS and the test peers only") == (
        "pynetdicom-the-demo-pacs-and-the-test-peers-only"
    )
