"""An incident as an admin types it on a page: the fields of the declare and edit forms
(also carried in the impact preview's address), read without losing what was typed, so a
mistaken form comes back filled in with the reason it was refused."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, QueryParams

from rewards.core import IncidentScope
from rewards.services.incidents import IncidentError
from rewards.services.records import IncidentRecord

SCOPE_KINDS = {"all": "every device", "version": "agent version below", "devices": "devices"}
_SEPARATORS = re.compile(r"[\s,]+")
US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class IncidentForm:
    """The typed text of each field (nothing parsed yet)."""

    start: str = ""
    end: str = ""
    recovery_deadline_h: str = "48"
    reason: str = ""
    scope_kind: str = "all"
    scope_version: str = ""
    scope_devices: str = ""

    @classmethod
    def read(cls, sent: FormData | QueryParams) -> IncidentForm:
        typed = {f.name: sent.get(f.name) for f in fields(cls)}
        return cls(**{k: v[:20_000] for k, v in typed.items() if isinstance(v, str)})

    @classmethod
    def of(cls, incident: IncidentRecord) -> IncidentForm:
        scope = IncidentScope.from_json(incident.scope)
        kind = "all" if scope.every else "devices" if scope.device_ids is not None else "version"
        return cls(
            start=f"{incident.start:%Y-%m-%dT%H:%M}",
            end=f"{incident.end:%Y-%m-%dT%H:%M}",
            recovery_deadline_h=f"{incident.recovery_deadline_us / US_PER_HOUR:g}",
            reason=incident.reason,
            scope_kind=kind,
            scope_version=scope.version_below or "",
            scope_devices="\n".join(scope.device_ids or ()),
        )

    def query(self) -> str:
        """The fields as a query string (the preview's address carries them)."""
        return urlencode(asdict(self))

    def hidden(self) -> dict[str, str]:
        return asdict(self)

    def edits(self) -> dict[str, Any]:
        """The fields as `incidents.decide` and `impact` take them; IncidentError naming
        the field that is wrong."""
        deadline = _number(self.recovery_deadline_h, "recovery deadline (hours)")
        if not 0 <= deadline <= 24 * 30:
            raise IncidentError("recovery deadline (hours): from 0 to 720")
        if not self.reason.strip():
            raise IncidentError("reason: say why (it is kept in the audit log)")
        return {
            "start": _moment(self.start, "start"),
            "end": _moment(self.end, "end"),
            "recovery_deadline": timedelta(hours=deadline),
            "reason": self.reason.strip()[:500],
            "scope": self.scope(),
        }

    def scope(self) -> dict[str, Any]:
        if self.scope_kind == "all":
            return {"all": True}
        if self.scope_kind == "version":
            return {"agent_version_below": self.scope_version.strip()}
        if self.scope_kind == "devices":
            named = [d for d in _SEPARATORS.split(self.scope_devices) if d]
            if not named:
                raise IncidentError("scope: name at least one device")
            return {"device_ids": sorted(set(named))}
        raise IncidentError(f"scope: one of {', '.join(SCOPE_KINDS)}")


def _moment(typed: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(typed.strip())
    except ValueError:
        raise IncidentError(f"{name}: a date and time such as 2024-04-25T14:00 (UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _number(typed: str, name: str) -> float:
    try:
        return float(typed)
    except ValueError:
        raise IncidentError(f"{name}: a number") from None
