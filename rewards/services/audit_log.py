"""Use cases for the audit log (DESIGN 9): check its hash chain end to end."""

from __future__ import annotations

from sqlalchemy import Engine

from rewards.db import audit
from rewards.db.engine import unit_of_work

ChainReport = audit.ChainReport  # a plain value: the doors may hold it


def verify_audit_log(engine: Engine) -> ChainReport:
    """Recompute every entry's hash in order, compare the end with the head, and check
    that every head a snapshot recorded is still in the log."""
    with unit_of_work(engine) as session:
        return audit.verify_chain(session)
