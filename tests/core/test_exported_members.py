"""The core's public surface is `rewards.core.__all__`: complete, and the only way in.

As httpx's test_exported_members: a name the package offers is listed, a listed name exists,
and (STYLE: a small explicit public surface) no module outside the core reaches past the
package into one of its modules.
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import rewards.core

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_of_the_core_is_listed_once_and_exists() -> None:
    offered = {
        name
        for name, value in vars(rewards.core).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    listed = rewards.core.__all__
    assert len(listed) == len(set(listed)), "a name is listed twice"
    assert set(listed) == offered


def _imports_of_core_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.level == 0
        and (node.module or "").startswith("rewards.core.")
    ]


def test_nothing_outside_the_core_imports_one_of_its_modules() -> None:
    outside = [
        path
        for folder in ("rewards", "jobs")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (ROOT / "rewards" / "core") not in path.parents
    ]
    assert outside, "no package modules found"
    assert [hit for path in outside for hit in _imports_of_core_modules(path)] == []
