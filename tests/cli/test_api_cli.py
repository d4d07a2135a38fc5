"""`rewards api` and `rewards serve` serve the API; `rewards dev-token` signs tokens only when
the development issuer is enabled, and the served API accepts them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.api.loopback import inside_one_rate_window
from tests.processes import REWARDS, cli, free_port


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90  # a loaded 2-core machine once took over 30 s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not come up")


@pytest.mark.parametrize("command", ["api", "serve"])
def test_the_served_api_accepts_a_dev_token_and_refuses_none(
    command: str, db_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env.update(
        REWARDS_DATABASE_URL=db_url,
        REWARDS_DEV_ISSUER_ENABLED="true",
        REWARDS_DEV_ISSUER_KEY_FILE=str(tmp_path / "dev.pem"),
        REWARDS_UPTIME_API_URL="http://127.0.0.1:9",
    )
    refused = cli(
        "dev-token",
        "--sub",
        "a",
        "--role",
        "admin",
        env={**env, "REWARDS_DEV_ISSUER_ENABLED": "false"},
    )
    assert refused.returncode == 2 and "development issuer is off" in refused.stderr
    bad_role = cli("dev-token", "--sub", "a", "--role", "root", env=env)
    assert bad_role.returncode == 2 and "unknown role" in bad_role.stderr
    token = cli("dev-token", "--sub", "owner-1", "--role", "supplier", env=env).stdout.strip()

    port = free_port()
    process = subprocess.Popen(
        [*REWARDS, command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        assert httpx.get(url + "/readyz").status_code == 200
        assert httpx.get(url + "/v1/me").status_code == 401
        me = httpx.get(url + "/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json() == {"subject": "owner-1", "roles": ["supplier"]}
        admin_only = httpx.get(
            url + "/v1/admin/incidents", headers={"Authorization": f"Bearer {token}"}
        )
        assert admin_only.status_code == 403
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_served_api_ignores_forwarded_headers_from_an_untrusted_peer(
    workers: str,
    databases,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """uvicorn trusts X-Forwarded-For from loopback by default; `rewards api` must not, or
    a client escapes the per-address limit by rotating it (issue 12, item 5)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env.pop("FORWARDED_ALLOW_IPS", None)
    env.update(
        REWARDS_DATABASE_URL=databases.fresh("sqlite"),
        REWARDS_RATE_LIMIT_PER_IP="3/minute",
        REWARDS_UPTIME_API_URL="http://127.0.0.1:9",
    )
    port = free_port()
    process = subprocess.Popen(
        [*REWARDS, "api", "--port", str(port), "--workers", workers],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)  # one request of this address's allowance per worker
        inside_one_rate_window()
        statuses = [
            httpx.get(url + "/healthz", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(10)
        ]
    finally:
        process.terminate()
        process.wait(30)
    # each worker keeps its own counts: at most 3 per worker get through
    assert statuses.count(200) <= 3 * int(workers) < len(statuses)
