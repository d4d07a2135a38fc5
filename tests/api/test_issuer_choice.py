"""The development issuer and a real issuer are never on together (issue 12, item 6;
DESIGN 10): with both configured the dev issuer used to win silently (real tokens got 401
and anyone could sign in as admin through its form); now nothing starts, and the message
names both settings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rewards.api.verifier import make_verifier
from rewards.settings import Settings, SettingsError, get_settings
from tests.conftest import Databases
from tests.processes import REWARDS, free_port

REAL = {
    "auth_issuer": "https://id.example.test/",
    "auth_jwks_url": "https://id.example.test/.well-known/jwks.json",
    "oidc_discovery_url": "https://id.example.test/.well-known/openid-configuration",
}


@pytest.mark.parametrize("setting", sorted(REAL))
def test_settings_refuse_the_dev_issuer_beside_a_real_one_naming_both(setting: str) -> None:
    with pytest.raises(SettingsError) as refused:
        get_settings(dev_issuer_enabled=True, **{setting: REAL[setting]})
    assert "dev_issuer_enabled" in str(refused.value) and setting in str(refused.value)
    get_settings(dev_issuer_enabled=False, **{setting: REAL[setting]})  # each alone is fine
    get_settings(dev_issuer_enabled=True)


def test_the_app_factory_refuses_them_even_past_the_settings_check(tmp_path: Path) -> None:
    unchecked = Settings.model_construct(
        **{**get_settings().model_dump(), "dev_issuer_enabled": True, **REAL}
    )
    with pytest.raises(ValueError, match=r"dev_issuer_enabled.*auth_issuer"):
        make_verifier(unchecked)


@pytest.mark.parametrize("command", ["api", "serve"])
def test_the_server_does_not_start_with_both_and_says_why(
    command: str, databases: Databases, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env.update(
        REWARDS_DATABASE_URL=databases.fresh("sqlite"),  # migrated: only the issuers are wrong
        REWARDS_DEV_ISSUER_ENABLED="true",
        REWARDS_DEV_ISSUER_KEY_FILE=str(tmp_path / "dev.pem"),
        REWARDS_AUTH_ISSUER=REAL["auth_issuer"],
        REWARDS_AUTH_JWKS_URL=REAL["auth_jwks_url"],
    )
    started = subprocess.run(
        [*REWARDS, command, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # before the fix it served until killed here
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert "dev_issuer_enabled" in started.stderr and "auth_issuer" in started.stderr
    assert "Traceback" not in started.stderr
