"""Finance's pages: published snapshots with their totals, the export files to download, and
the adjustments between two versions as a CSV download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from rewards.api.deps import REF_PATTERN, EngineDep, PolicyDep, SettingsDep, SnapshotRef
from rewards.api.routes.finance import ExportFile, finance_export
from rewards.services import exports
from rewards.services.snapshots import label, list_snapshots, resolve, settlement, token_decimals
from rewards.web.session import FinancePage
from rewards.web.templates import render

finance_pages = APIRouter(prefix="/app/finance", include_in_schema=False)

Ref = Annotated[str, Query(pattern=REF_PATTERN)]


@finance_pages.get("", response_class=HTMLResponse)
def snapshots(request: Request, who: FinancePage, policy: PolicyDep) -> HTMLResponse:
    """Published (and superseded) snapshots, newest first, with totals and downloads."""
    found = [
        (label(s), s)
        for s in list_snapshots(request.app.state.engine, policy.season_id)
        if s.status != "draft"
    ]
    return render(
        request,
        "finance.html",
        {"title": "Published snapshots", "snapshots": found, "files": list(exports.EXPORT_FILES)},
    )


@finance_pages.get("/snapshots/{ref}/export/{name}", response_class=FileResponse)
def download(request: Request, ref: SnapshotRef, name: ExportFile, who: FinancePage) -> Response:
    """One export file, the same bytes as the API's."""
    state = request.app.state
    return finance_export(ref, name, who, state.engine, state.settings)


@finance_pages.get("/adjustments.csv")
def adjustments_csv(
    who: FinancePage, engine: EngineDep, settings: SettingsDep, paid: Ref, due: Ref
) -> Response:
    """Per supplier, what is owed (positive) or was overpaid when `due` replaces `paid`."""
    table = settlement(engine, paid, due, settings.season)
    decimals = token_decimals(resolve(engine, due, settings.season))
    return Response(
        exports.adjustments_csv(table, decimals),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="adjustments-{paid}-{due}.csv"'},
    )
