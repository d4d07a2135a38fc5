"""The strict tools are part of the suite: lint, format, types and the import contracts."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
        ["lint-imports"],
    ],
    ids=" ".join,
)
def test_static_check_passes(command: list[str]) -> None:
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
WHY_LONG = "long because"  # a longer function says why in its docstring, in these words


def _sources() -> list[Path]:
    return sorted(p for root in ("rewards", "jobs") for p in (ROOT / root).rglob("*.py"))


def test_modules_hold_one_idea_each() -> None:
    """Issue 13: no module of the package over 450 lines."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_long_functions_say_why() -> None:
    """Issue 13: no function over 80 lines unless its docstring says why ("long because")."""
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and WHY_LONG not in (ast.get_docstring(node) or ""):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


# Imports a function may make outside the CLI, each with its reason where it is made.
LAZY_IMPORTS = {
    # pyarrow: 86 MiB and 0.3 s for every process, and only a season's read needs it
    ("rewards/db/bulk.py", "adbc_driver_postgresql.dbapi"),
}


def test_only_the_cli_imports_inside_functions() -> None:
    """Issue 13: imports sit at module level; the CLI imports inside its commands so that
    `rewards --help` starts fast (and ruff's PLC0415 exemption covers rewards/cli only).
    Outside it, only the LAZY_IMPORTS."""
    cli = ROOT / "rewards" / "cli"
    lazy = []
    for path in _sources():
        if cli in path.parents:
            continue
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                lazy += [
                    f"{path.relative_to(ROOT)}:{node.lineno}"
                    for node in ast.walk(function)
                    if isinstance(node, ast.Import | ast.ImportFrom)
                    and (str(path.relative_to(ROOT)), _imported(node)) not in LAZY_IMPORTS
                ]
    assert lazy == []


def _imported(node: ast.Import | ast.ImportFrom) -> str:
    if isinstance(node, ast.ImportFrom):
        return node.module or ""
    return ",".join(alias.name for alias in node.names)
