"""Docs that stay true: the extract contract, the README's command table, help for every command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from cli import app
from pipeline.contract import contract_markdown

ROOT = Path(__file__).parents[2]
runner = CliRunner()


def all_commands() -> list[tuple[str, ...]]:
    """Every leaf command as its words: ('run',), ('links', 'review'), ..."""
    found: list[tuple[str, ...]] = []

    def walk(group, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            # typer vendors its own click: a group is what has sub-commands, whichever click made it
            if isinstance(getattr(command, "commands", None), dict):
                walk(command, (*prefix, name))
            else:
                found.append((*prefix, name))

    walk(typer.main.get_group(app), ())
    return sorted(found)


def readme_command_rows() -> list[str]:
    """The first cell of each row of the README's command table, e.g. '`iom run [--as-of ...]`'."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^\| (`iom [^|]*`) \|", readme, flags=re.MULTILINE)


def test_extract_contract_doc_is_generated_from_the_contract():
    doc = (ROOT / "docs" / "extract-contract.md").read_text(encoding="utf-8")
    assert doc == contract_markdown(), "regenerate: python -m pipeline.contract > docs/extract-contract.md"


@pytest.mark.parametrize("words", all_commands(), ids=" ".join)
def test_every_command_is_in_the_readme_command_table(words):
    rows = readme_command_rows()
    wanted = "iom " + " ".join(words)
    assert any(re.search(rf"`{re.escape(wanted)}(\s|`)", row) for row in rows), (
        f"README's command table has no row for `{wanted}`")


def test_every_row_of_the_readme_command_table_is_a_real_command():
    commands = {"iom " + " ".join(words) for words in all_commands()}
    groups = {"iom " + " ".join(words[:-1]) for words in all_commands() if len(words) > 1}
    assert readme_command_rows()
    for row in readme_command_rows():
        for named in re.findall(r"`(iom [a-z]+(?: [a-z]+)?)", row):
            two_words = named in commands or named in groups
            assert two_words or named.rsplit(" ", 1)[0] in commands, f"README names `{named}`, which is no command"


@pytest.mark.parametrize("words", all_commands(), ids=" ".join)
def test_every_command_has_help_with_a_description(words):
    result = runner.invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    summary = typer.main.get_group(app)
    for word in words:
        summary = summary.commands[word]
    assert summary.help and len(summary.help.strip()) > 20, f"`iom {' '.join(words)}` needs a help text"
