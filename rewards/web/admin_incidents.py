"""An admin's incident pages: declare one with its scope, edit its window, deadline and
scope, confirm, un-confirm or dismiss it, and before any change that moves rewards see
what it would change (`services.impact`), per day, per device and per supplier. Every form
carries the CSRF token and every write is audited and surge-watched, as the API's are."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from rewards.api.auth import Principal
from rewards.api.deps import EngineDep, IncidentId, PolicyDep, SettingsDep, watch_write
from rewards.core import summarize
from rewards.services import exports
from rewards.services.archive import open_archive
from rewards.services.impact import CHANGES, Impact, impact
from rewards.services.incidents import IncidentError, decide, declare, find_incident
from rewards.services.records import IncidentRecord
from rewards.settings import Settings
from rewards.web.incident_form import SCOPE_KINDS, IncidentForm
from rewards.web.session import AdminPage
from rewards.web.templates import check_csrf, render, say

incident_pages = APIRouter(prefix="/app/admin/incidents", include_in_schema=False)

A_PAGE = 100
Change = Annotated[str, Query(pattern="^(" + "|".join(CHANGES) + ")$")]
Page = Annotated[int, Query(ge=0, le=1_000_000)]
DONE = {"confirm": "confirmed", "unconfirm": "proposed", "dismiss": "dismissed"}
VERB = {"confirm": "Confirming", "unconfirm": "Un-confirming", "edit": "This edit of"}


def _incident(engine: Engine, incident_id: str) -> IncidentRecord:
    found = find_incident(engine, incident_id)
    if found is None:
        raise HTTPException(404, "no such incident")
    return found


def _form_page(
    request: Request,
    form: IncidentForm,
    *,
    i: IncidentRecord | None,
    error: str = "",
    incident_id: str = "",
) -> HTMLResponse:
    title = f"Edit incident {i.id}" if i else "Declare an incident"
    return render(
        request,
        "incident_form.html",
        {"title": title, "f": form, "i": i, "error": error, "kinds": SCOPE_KINDS,
         "incident_id": incident_id},
        status_code=422 if error else 200,
    )  # fmt: skip


@incident_pages.get("/new", response_class=HTMLResponse)
def new_form(request: Request, who: AdminPage) -> HTMLResponse:
    return _form_page(request, IncidentForm(), i=None)


@incident_pages.post("", dependencies=[Depends(check_csrf)], response_model=None)
async def declare_incident(
    request: Request, who: AdminPage, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Declare a confirmed incident (audited); a refused form comes back as typed."""
    sent = await request.form()
    form, incident_id = IncidentForm.read(sent), str(sent.get("incident_id") or "").strip()[:80]
    await run_in_threadpool(watch_write, request, who, "admin.incidents.declare")
    try:
        edits = form.edits()
        await run_in_threadpool(
            declare, engine, incident_id=incident_id, start=edits["start"], end=edits["end"],
            recovery_deadline=edits["recovery_deadline"], scope=edits["scope"],
            reason=edits["reason"], by=who.subject, now=datetime.now(UTC),
            years=settings.timestamp_years,
        )  # fmt: skip
    except IncidentError as exc:
        return _form_page(request, form, i=None, error=str(exc), incident_id=incident_id)
    say(request, f"Incident {incident_id} declared and confirmed: it counts from the next run.")
    return RedirectResponse("/app/admin", status_code=303)


@incident_pages.get("/{incident_id}/edit", response_class=HTMLResponse)
def edit_form(
    request: Request, incident_id: IncidentId, who: AdminPage, engine: EngineDep
) -> HTMLResponse:
    found = _incident(engine, incident_id)
    return _form_page(request, IncidentForm.of(found), i=found)


@incident_pages.post("/{incident_id}/edit", dependencies=[Depends(check_csrf)], response_model=None)
async def edit(
    request: Request,
    incident_id: IncidentId,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    """Change an incident's window, deadline, scope or reason (times in UTC; audited)."""
    form = IncidentForm.read(await request.form())
    await run_in_threadpool(watch_write, request, who, "admin.incidents.edit")
    found = await run_in_threadpool(_incident, engine, incident_id)
    try:
        await run_in_threadpool(
            decide, engine, incident_id, status=None, by=who.subject, now=datetime.now(UTC),
            changes=form.edits(), years=settings.timestamp_years,
        )  # fmt: skip
    except IncidentError as exc:
        return _form_page(request, form, i=found, error=str(exc))
    say(request, f"Incident {incident_id} changed: the change counts from the next run.")
    return RedirectResponse("/app/admin", status_code=303)


def _decide(
    request: Request, engine: Engine, incident_id: str, who: Principal, decision: str
) -> RedirectResponse:
    """Confirm, un-confirm or dismiss an incident (audited), as the API does."""
    watch_write(request, who, f"admin.incidents.{decision}")
    decide(engine, incident_id, status=DONE[decision], by=who.subject, now=datetime.now(UTC))
    say(request, f"Incident {incident_id} {_SAID[decision]}.")
    return RedirectResponse("/app/admin", status_code=303)


_SAID = {
    "confirm": "confirmed: it counts from the next snapshot run",
    "unconfirm": "is proposed again: it no longer counts from the next snapshot run",
    "dismiss": "dismissed",
}


@incident_pages.post("/{incident_id}/confirm", dependencies=[Depends(check_csrf)])
def confirm_incident(
    request: Request, incident_id: IncidentId, who: AdminPage, engine: EngineDep
) -> RedirectResponse:
    return _decide(request, engine, incident_id, who, "confirm")


@incident_pages.post("/{incident_id}/unconfirm", dependencies=[Depends(check_csrf)])
def unconfirm_incident(
    request: Request, incident_id: IncidentId, who: AdminPage, engine: EngineDep
) -> RedirectResponse:
    return _decide(request, engine, incident_id, who, "unconfirm")


@incident_pages.post("/{incident_id}/dismiss", dependencies=[Depends(check_csrf)])
def dismiss_incident(
    request: Request, incident_id: IncidentId, who: AdminPage, engine: EngineDep
) -> RedirectResponse:
    return _decide(request, engine, incident_id, who, "dismiss")


def _preview(
    request: Request,
    engine: Engine,
    settings: Settings,
    policy: PolicyDep,
    incident_id: str,
    change: str,
) -> tuple[IncidentForm | None, Impact]:
    """The impact of `change`, the edit's form for an edit (typed in the address)."""
    form = IncidentForm.read(request.query_params) if change == "edit" else None
    return form, impact(
        engine, policy, incident_id, change, edits=form.edits() if form else None,
        archive=open_archive(settings.archive_url), years=settings.timestamp_years,
    )  # fmt: skip


@incident_pages.get("/{incident_id}/impact", response_class=HTMLResponse)
def impact_page(
    request: Request,
    incident_id: IncidentId,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    policy: PolicyDep,
    change: Change,
    page: Page = 0,
) -> HTMLResponse:
    """What `change` would do to rewards, before it is made; the button to make it."""
    found = _incident(engine, incident_id)
    try:
        form, seen = _preview(request, engine, settings, policy, incident_id, change)
    except IncidentError as exc:
        if change != "edit":
            raise
        return _form_page(request, IncidentForm.read(request.query_params), i=found, error=str(exc))
    days = seen.per_day.select("epoch", "day")
    rows = seen.rows.slice(page * A_PAGE, A_PAGE).join(days, on="epoch", how="left")
    return render(
        request,
        "impact.html",
        {"title": f"{VERB[change]} incident {incident_id}: what it would change",
         "i": found, "change": change, "form": form, "seen": seen, "rows": rows.to_dicts(),
         "page": page, "pages": -(-seen.rows.height // A_PAGE),
         "suppliers": seen.suppliers.height,
         "largest": summarize(seen.rows, seen.suppliers, largest=A_PAGE).largest,
         "decimals": policy.token_decimals,
         "query": request.url.query},
    )  # fmt: skip


@incident_pages.get("/{incident_id}/impact.csv")
def impact_csv(
    request: Request,
    incident_id: IncidentId,
    who: AdminPage,
    engine: EngineDep,
    settings: SettingsDep,
    policy: PolicyDep,
    change: Change,
) -> Response:
    """Every device-epoch the change would change, as CSV (amounts also in tokens)."""
    _incident(engine, incident_id)
    _, seen = _preview(request, engine, settings, policy, incident_id, change)
    return Response(
        exports.changes_csv(seen.rows, policy.token_decimals),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="impact-{incident_id}-{change}.csv"'
        },
    )
