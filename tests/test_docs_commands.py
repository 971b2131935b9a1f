"""Every crd-edge command written in the README and docs/ parses as written: the subcommand
exists, every option exists and every value has the right type and range (the click parser
runs without invoking the command). The fast ones (`profile` of a registered model) also run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from crd_edge.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:\.venv/bin/)?crd-edge\s+(.*)$")


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        fenced = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if not fenced:
                continue
            for part in line.split("&&"):
                match = COMMAND.match(part.strip())
                if match:
                    text = match.group(1).split(" #")[0].strip()
                    found.append((f"{doc.name}:{number}", shlex.split(text)))
    return found


COMMANDS = _commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) >= 30 and any(doc.startswith("README.md") for doc, _ in COMMANDS)


def _is(exc: BaseException, name: str) -> bool:
    """typer runs its own copy of click, so its exceptions are matched by class name."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _parse(args: list[str]) -> str | None:
    """None when ``crd-edge ARGS`` parses; else the parser's message."""
    command = typer.main.get_command(app)
    try:
        while hasattr(command, "get_command"):  # a group: descend to the subcommand
            name, args = args[0], args[1:]
            sub = command.get_command(command.context_class(command), name)
            if sub is None:
                return f"no command {name!r}"
            command = sub
        command.make_context(command.name, list(args))
    except Exception as exc:
        if _is(exc, "Exit"):  # --help and friends
            return None
        if _is(exc, "UsageError"):
            return exc.format_message()
        raise
    return None


@pytest.mark.parametrize("where,args", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where, args):
    problem = _parse(args)
    assert problem is None, f"{where}: crd-edge {' '.join(args)}: {problem}"


FAST = [(w, a) for w, a in COMMANDS if a[0] == "profile" and "--train-step" not in a and not any("/" in x for x in a)]


@pytest.mark.parametrize("where,args", FAST, ids=[w for w, _ in FAST])
def test_fast_documented_commands_run(run_cli, where, args):
    code, out, err = run_cli(*args)
    assert code == 0, f"{where}: {err}"
    assert out.strip()


@pytest.mark.parametrize("args", [["distill", "--bogus"], ["export", "x.pt", "--precision"], ["data", "nonsense"],
                                  ["distill", "--steps", "abc"]])
def test_the_checker_catches_a_wrong_command(args):
    assert _parse(args)
