"""Finance's door: snapshots with their totals, export files (streamed), adjustments."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as FastPath
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from rewards.api.deps import (
    Cursor,
    EngineDep,
    Finance,
    Limit,
    SettingsDep,
    SnapshotQuery,
    SnapshotRef,
)
from rewards.api.routes.common import snapshot_out
from rewards.api.schemas import AdjustmentOut, SnapshotOut
from rewards.services.exports import EXPORT_FILES, export_file
from rewards.services.snapshots import list_snapshots, resolve, settlement

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
    found = list_snapshots(engine, settings.season)
    found = [s for s in found if before is None or s.version < before]
    return [snapshot_out(s) for s in found[:limit]]


ExportFile = Annotated[
    str, FastPath(pattern="^(" + "|".join(EXPORT_FILES).replace(".", r"\.") + ")$")
]


@finance.get("/snapshots/{ref}/export/{name}", response_class=FileResponse)
def finance_export(
    ref: SnapshotRef, name: ExportFile, who: Finance, engine: EngineDep, settings: SettingsDep
) -> FileResponse:
    """One file of the snapshot's finance export, streamed (see manifest.json for hashes);
    only that file is built (the manifest needs them all). 409 when the stored content
    does not match the snapshot's hashes."""
    snapshot = resolve(engine, ref, settings.season)
    scratch = Path(tempfile.mkdtemp(prefix="export-"))
    try:
        path = export_file(engine, snapshot, name, scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return FileResponse(
        path,
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
    """Per supplier, what is owed (positive) or was overpaid when `due` replaces `paid`:
    404 for an unknown snapshot, 409 when the two cannot be settled."""
    table = settlement(engine, paid, due, settings.season)
    return [AdjustmentOut(**row) for row in table.iter_rows(named=True)]
