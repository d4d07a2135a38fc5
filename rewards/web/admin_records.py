"""An admin's look-ups: any device by id (its owner, metadata history, timeline and what
the published snapshot pays it), metadata changes by who wrote them and when with their
revert, and the audit log with filters and its chain status. Lists page by keyset, so a
page costs the same at 600,000 devices as at 80."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse

from rewards.api.deps import EngineDep, PolicyDep, SettingsDep, watch_write
from rewards.core import IDENTIFIER_PATTERN, KINDS, epoch_bounds
from rewards.services.archive import open_archive
from rewards.services.audit_log import audit_actions, audit_entries, verify_audit_log
from rewards.services.devices import (
    RevertError,
    metadata_changes,
    newest_heartbeat,
    online,
    public_device,
    revert_changes,
)
from rewards.services.pages import device_timeline
from rewards.services.snapshots import label, published_device
from rewards.web.session import AdminPage
from rewards.web.templates import check_csrf, render, say

record_pages = APIRouter(prefix="/app/admin", include_in_schema=False)

A_PAGE = 100
Ident = Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)]
Moment = Annotated[datetime | None, Query()]
Keyset = Annotated[int | None, Query(ge=0, le=2**62)]


def _utc(moment: datetime | None) -> datetime | None:
    """A time typed without a zone is UTC (the pages say so)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@record_pages.get("/devices", response_class=HTMLResponse, response_model=None)
def find_device(
    request: Request, who: AdminPage, engine: EngineDep, q: Ident = None
) -> HTMLResponse | RedirectResponse:
    """Look a device up by its exact id."""
    if q and public_device(engine, q) is not None:
        return RedirectResponse(f"/app/admin/devices/{q}", status_code=303)
    return render(
        request,
        "admin_device_find.html",
        {"title": "Find a device", "q": q or "", "missing": bool(q)},
        status_code=404 if q else 200,
    )


@record_pages.get("/devices/{device_id}", response_class=HTMLResponse)
def device(
    request: Request,
    device_id: Annotated[str, PathParam(pattern=IDENTIFIER_PATTERN)],
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    policy: PolicyDep,
) -> HTMLResponse:
    """One device: now, its metadata history, its timeline and its published rows."""
    now = public_device(engine, device_id)
    if now is None:
        raise HTTPException(404, "no such device")
    history = metadata_changes(engine, device_id=device_id, limit=A_PAGE)
    timeline = device_timeline(engine, policy, device_id, open_archive(settings.archive_url))
    segments: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for _, epoch, kind, s, e in timeline.segments.iter_rows():
        segments[epoch].append((kind, s, e))
    published = published_device(engine, policy.season_id, device_id)
    paid = {} if published is None else {r["epoch"]: r for r in published[1].iter_rows(named=True)}
    seen = online(now.last_seen, newest_heartbeat(engine), policy.liveness_timeout_us)
    epochs = [
        {"epoch": e, "bounds": epoch_bounds(policy, e), "segments": segments.get(e, []),
         "paid": paid.get(e)}
        for e in sorted(set(segments) | set(paid))
    ]  # fmt: skip
    return render(
        request,
        "admin_device.html",
        {"title": f"Device {device_id}", "d": now, "online": seen, "history": history,
         "more_history": len(history) == A_PAGE, "epochs": epochs, "kinds": KINDS,
         "published": label(published[0]) if published else None},
    )  # fmt: skip


@record_pages.get("/metadata", response_class=HTMLResponse)
def metadata(
    request: Request,
    who: AdminPage,
    engine: EngineDep,
    actor: Ident = None,
    device: Ident = None,
    since: Moment = None,
    until: Moment = None,
    after: Keyset = None,
) -> HTMLResponse:
    """Metadata versions by who wrote them, when they took effect and device, oldest
    first; with an actor and a window, the form that reverts exactly what is listed."""
    since, until = _utc(since), _utc(until)
    found = metadata_changes(
        engine, actor=actor, device_id=device, since=since, until=until, after_id=after,
        limit=A_PAGE,
    )  # fmt: skip
    return render(
        request,
        "admin_metadata.html",
        {"title": "Metadata changes", "found": found, "actor": actor or "",
         "device": device or "", "since": since, "until": until,
         "next": found[-1].id if len(found) == A_PAGE else None,
         "query": request.url.query, "can_revert": bool(actor and since and until)},
    )  # fmt: skip


@record_pages.post("/metadata/revert", dependencies=[Depends(check_csrf)])
def revert(
    request: Request,
    who: AdminPage,
    engine: EngineDep,
    actor: Annotated[str, Form(pattern=IDENTIFIER_PATTERN)],
    since: Annotated[datetime, Form()],
    until: Annotated[datetime, Form()],
    reason: Annotated[str, Form(min_length=1, max_length=500)],
) -> RedirectResponse:
    """Revert every change `actor` made in [since, until) (audited)."""
    watch_write(request, who, "admin.metadata.revert")
    try:
        done = revert_changes(
            engine, actor=actor, since=_utc(since) or since, until=_utc(until) or until,
            by=who.subject, now=datetime.now(UTC), reason=reason,
        )  # fmt: skip
    except RevertError as exc:
        raise HTTPException(422, str(exc)) from None
    devices = len({v.device_id for v in done})
    say(
        request,
        f"Reverted {len(done):,} metadata change{'' if len(done) == 1 else 's'} by {actor} "
        f"on {devices:,} device{'' if devices == 1 else 's'}: the next snapshot run uses the "
        "metadata as it was before them.",
        f"reverted:{len(done)}",
    )
    return RedirectResponse(f"/app/admin/metadata?actor={actor}", status_code=303)


@record_pages.get("/audit", response_class=HTMLResponse)
def audit_log(
    request: Request,
    who: AdminPage,
    engine: EngineDep,
    actor: Ident = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z][a-z._-]{0,79}$")] = None,
    subject: Ident = None,
    since: Moment = None,
    until: Moment = None,
    before: Keyset = None,
    check: Annotated[bool, Query()] = False,
) -> HTMLResponse:
    """The audit log, newest first, by who, what, about what and when; with `check`, the
    whole chain verified now."""
    since, until = _utc(since), _utc(until)
    found = audit_entries(
        engine, actor=actor, action=action, subject=subject, since=since, until=until,
        before_id=before, limit=A_PAGE,
    )  # fmt: skip
    return render(
        request,
        "admin_audit.html",
        {"title": "Audit log", "found": found, "actions": audit_actions(engine),
         "f": {"actor": actor or "", "action": action or "", "subject": subject or "",
               "since": since, "until": until},
         "older": found[-1].id if len(found) == A_PAGE else None,
         "query": request.url.query, "chain": verify_audit_log(engine) if check else None},
    )  # fmt: skip
