"""The README's first command tells the whole story (a smaller fleet, same steps)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx

from tests.processes import REWARDS, free_port, rewards
from tests.web.conftest import hidden_fields


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
        "recomputes april-2024-demo-v2's fingerprint, content hash, root and export files: all",
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
    _the_pages_open_as_printed(story, tmp_path, env)


def _the_pages_open_as_printed(story: str, tmp_path: Path, env: dict[str, str]) -> None:
    """Step 11's command serves the demo's database, and its supplier sees their grid."""
    command = re.search(r"((?:REWARDS_[A-Z_]+=\S+ )+)\.venv/bin/rewards api --port (\d+)", story)
    supplier = re.search(r"supplier: subject (\S+), role supplier", story)
    assert command is not None and supplier is not None, story[-1500:]
    settings = dict(pair.split("=", 1) for pair in command.group(1).split())
    port = free_port()  # the printed 8700 may be taken here
    served = {
        **env,
        **settings,
        "REWARDS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "REWARDS_SESSION_SECRET_FILE": str(tmp_path / "session-secret"),
        "REWARDS_DEV_ISSUER_KEY_FILE": str(tmp_path / "dev.pem"),
    }
    server = subprocess.Popen(
        [*REWARDS, "api", "--port", str(port)],
        env=served,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the printed command did not serve"
                time.sleep(0.3)
        form = client.get("/app/supplier", follow_redirects=True)  # to the dev issuer's form
        page = client.post(
            "/dev-issuer/authorize",
            data={**hidden_fields(form.text), "subject": supplier.group(1), "roles": "supplier"},
            follow_redirects=True,
        )
        assert str(page.url).endswith("/app/supplier") and page.status_code == 200
        assert page.text.count('data-state="eligible"') > 0  # the demo built the view
    finally:
        server.terminate()
        server.wait(30)
