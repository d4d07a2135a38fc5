"""An admin's pages: the fleet's online count with incidents over it and the decisions on
proposed incidents; snapshot runs, diffs and publishing (with a confirmation step); alerts
and job runs. Every form carries the CSRF token; every write goes through the same surge
detector and audit log as the API's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine

from rewards.api.deps import (
    REF_PATTERN,
    EngineDep,
    KeyDep,
    PolicyDep,
    SettingsDep,
    SnapshotRef,
    watch_write,
)
from rewards.core import epoch_changes, summarize, to_us
from rewards.services import exports
from rewards.services.alerts import clear, list_alerts
from rewards.services.archive import open_archive
from rewards.services.computing import plan_of
from rewards.services.incidents import list_incidents
from rewards.services.pages import fleet_series
from rewards.services.publication import preview, publish_ref
from rewards.services.records import SnapshotRecord
from rewards.services.runs import recent_runs
from rewards.services.snapshot_runs import run_now
from rewards.services.snapshots import (
    compare,
    epoch_days_of,
    label,
    list_snapshots,
    resolve,
    since_previous,
    stored_epochs,
    token_decimals,
)
from rewards.web.session import AdminPage
from rewards.web.templates import check_csrf, render, say

admin_pages = APIRouter(prefix="/app/admin", include_in_schema=False)

A_PAGE = 100

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
    key: KeyDep,
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
        key=key,
        plan=plan_of(settings),
        keep=settings.snapshot_inputs_path,
    )
    made = label(outcome.snapshot)
    if outcome.created:
        words = run_words(engine, outcome.snapshot)
        say(request, f"Snapshot {made} created: {words}.", f"ran:{made}")
    else:
        say(request, f"Nothing changed since {made}: no new version.", f"unchanged:{made}")
    return RedirectResponse("/app/admin/snapshots", status_code=303)


def run_words(engine: Engine, made: SnapshotRecord) -> str:
    """What a new version changed, in words: "412 device-epochs differ from v2"."""
    found = since_previous(engine, made)
    if found is None:
        return "the season's first version"
    changed = found.summary.device_epochs_changed
    return (
        f"{changed:,} device-epoch{'' if changed == 1 else 's'} differ from {label(found.before)}"
    )


@admin_pages.get("/snapshots/diff", response_class=HTMLResponse)
def diff_page(
    request: Request,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    before: Ref,
    after: Ref,
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    """What changed between two versions: per day, per device (paged, downloadable) and
    the suppliers with the largest changes."""
    found = compare(engine, before, after, settings.season)
    a, b = label(found.before), label(found.after)
    per_day = epoch_changes(
        found.rows, stored_epochs(engine, found.before), stored_epochs(engine, found.after)
    ).with_columns(day=epoch_days_of(found.after))
    rows = found.rows.slice(page * A_PAGE, A_PAGE).with_columns(day=epoch_days_of(found.after))
    return render(
        request,
        "diff.html",
        {"title": f"{a} to {b}", "a": a, "b": b, "s": found.summary, "per_day": per_day,
         "rows": rows.to_dicts(), "total": found.rows.height, "page": page,
         "pages": -(-found.rows.height // A_PAGE), "query": request.url.query,
         "decimals": token_decimals(found.after), "suppliers": found.suppliers.height,
         "largest": summarize(found.rows, found.suppliers, largest=A_PAGE).largest},
    )  # fmt: skip


@admin_pages.get("/snapshots/diff.csv")
def diff_csv(
    who: AdminPage, engine: EngineDep, settings: SettingsDep, before: Ref, after: Ref
) -> Response:
    """Every changed device-epoch between two versions, as CSV (amounts also in tokens)."""
    found = compare(engine, before, after, settings.season)
    name = f"changes-{label(found.before)}-{label(found.after)}.csv"
    return Response(
        exports.changes_csv(found.rows, token_decimals(found.after)),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
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
    say(request, f"Snapshot {named} published: suppliers are paid from it.", f"published:{named}")
    return RedirectResponse("/app/admin/snapshots", status_code=303)


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
