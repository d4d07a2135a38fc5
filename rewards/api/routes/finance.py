"""Finance's door: snapshots with totals, export files (streamed), adjustments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException
from fastapi import Path as FastPath
from fastapi.responses import FileResponse

from rewards.api.deps import (
    Cursor,
    EngineDep,
    Finance,
    Limit,
    SettingsDep,
    SnapshotQuery,
    SnapshotRef,
)
from rewards.api.routes.common import resolve_or_404, snapshot_out
from rewards.api.schemas import (
    AdjustmentOut,
    SnapshotOut,
)

finance = APIRouter(prefix="/v1/finance", tags=["finance"])


@finance.get("/snapshots", response_model=list[SnapshotOut])
def finance_snapshots(
    who: Finance,
    engine: EngineDep,
    settings: SettingsDep,
    limit: Limit = 100,
    before: Cursor = None,
) -> list[SnapshotOut]:
    """The season's snapshots, newest first, with their totals and roots; for the next
    page pass the last one's version as `before`."""
    from rewards.services.snapshots import list_snapshots

    found = list_snapshots(engine, settings.season)
    found = [s for s in found if before is None or s.version < before]
    return [snapshot_out(s) for s in found[:limit]]


EXPORT_FILES = {
    "device_epochs.csv": "text/csv",
    "device_epochs.parquet": "application/vnd.apache.parquet",
    "suppliers.csv": "text/csv",
    "suppliers.parquet": "application/vnd.apache.parquet",
    "manifest.json": "application/json",
}
if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Engine

    from rewards.settings import Settings

ExportFile = Annotated[
    str, FastPath(pattern="^(" + "|".join(EXPORT_FILES).replace(".", r"\.") + ")$")
]


@finance.get("/snapshots/{ref}/export/{name}", response_class=FileResponse)
def finance_export(
    ref: SnapshotRef, name: ExportFile, who: Finance, engine: EngineDep, settings: SettingsDep
) -> FileResponse:
    """One file of the snapshot's finance export, streamed (see manifest.json for hashes)."""
    import shutil
    import tempfile
    from pathlib import Path as FilePath

    from starlette.background import BackgroundTask

    from rewards.services.snapshots import SnapshotError, export

    snap = resolve_or_404(engine, ref, settings.season)
    scratch = FilePath(tempfile.mkdtemp(prefix="export-"))
    try:
        export(engine, snap, scratch / "out")
    except SnapshotError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise HTTPException(409, "this snapshot cannot be exported (see the logs)") from None
    return FileResponse(
        scratch / "out" / name,
        media_type=EXPORT_FILES[name],
        filename=f"{ref}-{name}",
        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True),
    )


@finance.get("/adjustments", response_model=list[AdjustmentOut])
def finance_adjustments(
    paid: SnapshotQuery,
    due: SnapshotQuery,
    who: Finance,
    engine: EngineDep,
    settings: SettingsDep,
) -> list[AdjustmentOut]:
    """Per supplier, what is owed (positive) or was overpaid when `due` replaces `paid`."""
    table = adjustments(engine, settings, paid, due)
    return [AdjustmentOut(**row) for row in table.iter_rows(named=True)]


def adjustments(engine: Engine, settings: Settings, paid: str, due: str) -> pl.DataFrame:
    """The settlement table of `due` replacing `paid`: 404 for an unknown snapshot, 409 when
    the two cannot be settled. Shared with the pages."""
    from rewards.services.snapshots import SnapshotError, settle

    a = resolve_or_404(engine, paid, settings.season)
    b = resolve_or_404(engine, due, settings.season)
    try:
        return settle(engine, a, b)
    except SnapshotError as exc:
        raise HTTPException(409, str(exc)) from None
