"""The serving engine's PostgreSQL connections (rewards/db/engine.py): its short lock wait
(DESIGN 10: 503 within seconds) is added to whatever the database URL asks of the server
through libpq `options`, never in place of it."""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import text

from rewards.db.engine import SERVING_WAIT_S, make_engine
from tests.conftest import Databases


def test_the_serving_engine_keeps_the_urls_options_and_adds_its_lock_timeout(
    databases: Databases,
) -> None:
    options = "-c application_name=rewards-edge -c search_path=public,pg_catalog"
    url = databases.fresh("postgresql") + "?options=" + quote(options)
    engine = make_engine(url, serving=True)
    try:
        with engine.connect() as connection:
            shown = {
                name: connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("application_name", "search_path", "lock_timeout")
            }
            assert connection.execute(text("SELECT count(*) FROM incidents")).scalar_one() == 0
    finally:
        engine.dispose()
    assert shown == {
        "application_name": "rewards-edge",
        "search_path": "public,pg_catalog",
        "lock_timeout": f"{SERVING_WAIT_S}s",
    }


def test_the_urls_own_lock_timeout_is_the_operators_choice(databases: Databases) -> None:
    url = databases.fresh("postgresql") + "?options=" + quote("-c lock_timeout=7s")
    engine = make_engine(url, serving=True)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW lock_timeout")).scalar_one() == "7s"
    finally:
        engine.dispose()
