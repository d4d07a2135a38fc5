"""The README's first command tells the whole story (a smaller fleet, same steps)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.processes import rewards


def test_the_demo_tells_the_story_and_leaves_its_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    done = rewards("demo", "--devices", "300", "--workdir", str(tmp_path / "demo"), env=env)
    assert done.returncode == 0, done.stderr
    story = done.stdout
    for step in (
        "snapshot v1, with no incident declared",
        "the outage detector proposes auto-fleet-drop-20240425T",
        "demo-admin confirms",
        "snapshot v2, rerun with the incident confirmed",
        "regained eligibility",
        "base units moved",
        "demo-finance publishes april-2024-demo-v2",
        "manifest verifies",
        "verifies against the published root",
    ):
        assert step in story, step
    v1, v2 = (
        int(n.replace(",", "")) for n in re.findall(r"([\d,]+) eligible device-epochs", story)
    )
    assert v2 > v1  # confirming the incident gave eligibility back
    export = tmp_path / "demo" / "export-april-2024-demo-v2"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["status"] == "published"
    assert manifest["totals"]["paid"] == 10 * manifest["policy"]["pool_per_epoch"]
    proofs = list((tmp_path / "demo").glob("proof-*.json"))
    assert len(proofs) == 1
    assert json.loads(proofs[0].read_text())["root"] == manifest["merkle_root"]
    assert (tmp_path / "demo" / "rewards.db").is_file()
