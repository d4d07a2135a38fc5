"""An admin's pages: the fleet's online count with incidents over it and the decisions on
proposed incidents; snapshot runs, diffs and publishing (with a confirmation step); alerts
and job runs. Every form carries the CSRF token; every write goes through the same surge
detector and audit log as the API's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine

from rewards.api.auth import Principal
from rewards.api.deps import (
    REF_PATTERN,
    EngineDep,
    IncidentId,
    PolicyDep,
    SettingsDep,
    SnapshotRef,
    watch_write,
)
from rewards.core import to_us
from rewards.services.alerts import clear, list_alerts
from rewards.services.archive import open_archive
from rewards.services.computing import plan_of
from rewards.services.incidents import decide, find_incident, list_incidents
from rewards.services.pages import fleet_series
from rewards.services.publication import preview, publish_ref
from rewards.services.runs import recent_runs
from rewards.services.snapshot_runs import run_now
from rewards.services.snapshots import compare, label, list_snapshots, resolve
from rewards.web.session import AdminPage
from rewards.web.templates import check_csrf, render

admin_pages = APIRouter(prefix="/app/admin", include_in_schema=False)

Ref = Annotated[str, Query(pattern=REF_PATTERN)]
Reason = Annotated[str, Form(min_length=1, max_length=500)]


@admin_pages.get("", response_class=HTMLResponse)
def fleet(request: Request, who: AdminPage, engine: EngineDep, policy: PolicyDep) -> HTMLResponse:
    """The fleet's online count over the season, incidents drawn over it."""
    now = datetime.now(UTC)
    series = fleet_series(engine, policy, now=now)
    counts = [(to_us(at), int(n)) for at, n in series.iter_rows()]
    found = list_incidents(engine)
    drawn = [
        (i.id, i.status, to_us(i.start), to_us(i.end))
        for i in found
        if i.status in ("confirmed", "proposed")
    ]
    return render(
        request,
        "admin.html",
        {"title": "Fleet and incidents", "counts": counts, "drawn": drawn,
         "proposed": [i for i in found if i.status == "proposed"],
         "confirmed": [i for i in found if i.status == "confirmed"]},
    )  # fmt: skip


def _decide(
    request: Request, engine: Engine, incident_id: str, who: Principal, decision: str
) -> RedirectResponse:
    """Confirm or dismiss an incident (audited), as the API does."""
    watch_write(request, who, f"admin.incidents.{decision}")
    status = "confirmed" if decision == "confirm" else "dismissed"
    decide(engine, incident_id, status=status, by=who.subject, now=datetime.now(UTC))
    return RedirectResponse(f"/app/admin?done={status}:{incident_id}", status_code=303)


@admin_pages.post("/incidents/{incident_id}/confirm", dependencies=[Depends(check_csrf)])
def confirm_incident(
    request: Request, incident_id: IncidentId, who: AdminPage, engine: EngineDep
) -> RedirectResponse:
    return _decide(request, engine, incident_id, who, "confirm")


@admin_pages.post("/incidents/{incident_id}/dismiss", dependencies=[Depends(check_csrf)])
def dismiss_incident(
    request: Request, incident_id: IncidentId, who: AdminPage, engine: EngineDep
) -> RedirectResponse:
    return _decide(request, engine, incident_id, who, "dismiss")


@admin_pages.get("/incidents/{incident_id}/edit", response_class=HTMLResponse)
def edit_form(
    request: Request, incident_id: IncidentId, who: AdminPage, engine: EngineDep
) -> HTMLResponse:
    found = find_incident(engine, incident_id)
    if found is None:
        raise HTTPException(404, "no such incident")
    return render(request, "incident_edit.html", {"title": "Edit incident", "i": found})


@admin_pages.post("/incidents/{incident_id}/edit", dependencies=[Depends(check_csrf)])
def edit(
    request: Request,
    incident_id: IncidentId,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    start: Annotated[datetime, Form()],
    end: Annotated[datetime, Form()],
    recovery_deadline_h: Annotated[float, Form(gt=0, le=24 * 30)],
    reason: Reason,
) -> RedirectResponse:
    """Change an incident's window, deadline or reason (times in UTC; audited)."""
    watch_write(request, who, "admin.incidents.edit")
    changes = {
        "start": start.replace(tzinfo=UTC) if start.tzinfo is None else start,
        "end": end.replace(tzinfo=UTC) if end.tzinfo is None else end,
        "recovery_deadline": timedelta(hours=recovery_deadline_h),
        "reason": reason,
    }
    decide(
        engine,
        incident_id,
        status=None,
        by=who.subject,
        now=datetime.now(UTC),
        changes=changes,
        years=settings.timestamp_years,
    )
    return RedirectResponse(f"/app/admin?done=edited:{incident_id}", status_code=303)


@admin_pages.get("/snapshots", response_class=HTMLResponse)
def snapshots(
    request: Request, who: AdminPage, engine: EngineDep, policy: PolicyDep
) -> HTMLResponse:
    found = list_snapshots(engine, policy.season_id)
    return render(
        request,
        "snapshots.html",
        {"title": "Snapshots", "snapshots": [(label(s), s) for s in found]},
    )


@admin_pages.post("/snapshots/run", dependencies=[Depends(check_csrf)])
def run(
    request: Request,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    policy: PolicyDep,
    reason: Reason,
) -> RedirectResponse:
    """Rerun a draft snapshot of every settled epoch of the season (audited)."""
    watch_write(request, who, "admin.snapshots.run")
    outcome = run_now(
        engine,
        policy,
        by=who.subject,
        reason=reason,
        epochs=None,
        settlement=settings.settlement,
        lock_ttl=settings.job_lock,
        archive=open_archive(settings.archive_url),
        clock=lambda: datetime.now(UTC),
        plan=plan_of(settings),
    )
    made = label(outcome.snapshot)
    state = "ran" if outcome.created else "unchanged"
    return RedirectResponse(f"/app/admin/snapshots?done={state}:{made}", status_code=303)


@admin_pages.get("/snapshots/diff", response_class=HTMLResponse)
def diff_page(
    request: Request,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    before: Ref,
    after: Ref,
) -> HTMLResponse:
    found = compare(engine, before, after, settings.season)
    a, b = label(found.before), label(found.after)
    return render(
        request, "diff.html", {"title": f"{a} to {b}", "a": a, "b": b, "s": found.summary}
    )


@admin_pages.get("/snapshots/{ref}/publish", response_class=HTMLResponse)
def publish_confirm(
    request: Request, ref: SnapshotRef, who: AdminPage, engine: EngineDep, settings: SettingsDep
) -> HTMLResponse:
    """The confirmation step: what publishing `ref` means, before it happens."""
    shown = preview(engine, ref, settings.season)
    snap, current = shown.snapshot, shown.current
    return render(
        request,
        "publish.html",
        {"title": f"Publish {label(snap)}?", "snap": snap, "ref": label(snap),
         "current": label(current) if current else None,
         "s": shown.moves.summary if shown.moves else None, "rollback": shown.rollback},
    )  # fmt: skip


@admin_pages.post("/snapshots/{ref}/publish", dependencies=[Depends(check_csrf)])
def publish(
    request: Request,
    ref: SnapshotRef,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    confirm: Annotated[str, Form(pattern=REF_PATTERN)],
    override_rollback: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    """Publish, once the typed confirmation names the snapshot; a rollback (an older
    version than the published one) also needs the override ticked and a reason."""
    named = label(resolve(engine, ref, settings.season))
    if confirm != named:
        raise HTTPException(422, f"type {named} to confirm")
    if override_rollback and not reason.strip():
        raise HTTPException(422, "a rollback needs a reason")
    watch_write(request, who, "admin.snapshots.publish")
    publish_ref(
        engine,
        ref,
        settings.season,
        by=who.subject,
        clock=lambda: datetime.now(UTC),
        lock_ttl=settings.job_lock,
        rollback_reason=reason if override_rollback else None,
    )
    return RedirectResponse(f"/app/admin/snapshots?done=published:{named}", status_code=303)


@admin_pages.get("/alerts", response_class=HTMLResponse)
def alerts(request: Request, who: AdminPage, engine: EngineDep) -> HTMLResponse:
    return render(
        request,
        "alerts.html",
        {"title": "Alerts and job runs", "alerts": list_alerts(engine, None, 100),
         "runs": recent_runs(engine, 100)},
    )  # fmt: skip


@admin_pages.post("/alerts/{alert_id}/clear", dependencies=[Depends(check_csrf)])
def clear_alert(
    request: Request, alert_id: int, who: AdminPage, engine: EngineDep
) -> RedirectResponse:
    clear(engine, alert_id, by=who.subject, now=datetime.now(UTC))
    return RedirectResponse("/app/admin/alerts", status_code=303)
