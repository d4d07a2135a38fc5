"""Finance's pages: published snapshots with who published them, their totals in tokens and
per epoch, the export files to download, and the adjustments between any two versions,
previewed, then downloaded as CSV."""

from __future__ import annotations

from typing import Annotated

import polars as pl
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from rewards.api.deps import REF_PATTERN, EngineDep, PolicyDep, SettingsDep, SnapshotRef
from rewards.api.routes.finance import ExportFile, finance_export
from rewards.services import exports
from rewards.services.snapshots import (
    epoch_days_of,
    label,
    list_snapshots,
    resolve,
    settlement,
    stored_epochs,
    token_decimals,
)
from rewards.web.session import FinancePage
from rewards.web.templates import render

finance_pages = APIRouter(prefix="/app/finance", include_in_schema=False)
A_PAGE = 100

Ref = Annotated[str, Query(pattern=REF_PATTERN)]


@finance_pages.get("", response_class=HTMLResponse)
def snapshots(request: Request, who: FinancePage, policy: PolicyDep) -> HTMLResponse:
    """Published (and superseded) snapshots, newest first, with totals and downloads."""
    found = [
        (label(s), s, token_decimals(s))
        for s in list_snapshots(request.app.state.engine, policy.season_id)
        if s.status != "draft"
    ]
    return render(
        request,
        "finance.html",
        {"title": "Published snapshots", "snapshots": found, "files": list(exports.EXPORT_FILES)},
    )


@finance_pages.get("/snapshots/{ref}", response_class=HTMLResponse)
def snapshot(
    request: Request, ref: SnapshotRef, who: FinancePage, engine: EngineDep, settings: SettingsDep
) -> HTMLResponse:
    """One published snapshot: who published it and when, and its totals per epoch (day)."""
    found = resolve(engine, ref, settings.season)
    if found.status == "draft":
        raise HTTPException(404, f"{label(found)} is a draft: finance sees published versions")
    epochs = stored_epochs(engine, found).with_columns(day=epoch_days_of(found))
    return render(
        request,
        "finance_snapshot.html",
        {"title": f"Snapshot {label(found)}", "s": found, "name": label(found),
         "epochs": epochs.to_dicts(), "decimals": token_decimals(found),
         "files": list(exports.EXPORT_FILES)},
    )  # fmt: skip


@finance_pages.get("/adjustments", response_class=HTMLResponse)
def adjustments(
    request: Request,
    who: FinancePage,
    engine: EngineDep,
    settings: SettingsDep,
    paid: Ref,
    due: Ref,
) -> HTMLResponse:
    """What settling `due` in place of `paid` means, before downloading it: per supplier
    owed or overpaid, the largest first, with the totals."""
    table = settlement(engine, paid, due, settings.season)
    ranked = table.sort([pl.col("adjustment").abs(), "owner_id"], descending=[True, False])
    owed = int(table.filter(pl.col("adjustment") > 0)["adjustment"].sum())
    overpaid = int(table.filter(pl.col("adjustment") < 0)["adjustment"].sum())
    return render(
        request,
        "adjustments.html",
        {"title": f"Adjustments: {paid} to {due}", "paid": paid, "due": due,
         "rows": ranked.head(A_PAGE).to_dicts(), "count": table.height, "owed": owed,
         "overpaid": overpaid, "decimals": token_decimals(resolve(engine, due, settings.season))},
    )  # fmt: skip


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
