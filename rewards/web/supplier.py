"""A supplier's pages: devices and the season's eligibility grid, one device's timeline with
its explanation, and rewards with their Merkle proofs. Only ever the signed-in supplier's
own: another supplier's device is the same 404 as one that does not exist."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from rewards.api.deps import KeyDep, PolicyDep
from rewards.core import (
    GRID_LETTERS,
    IDENTIFIER_PATTERN,
    KINDS,
    NOT_OWNED,
    SeasonPolicy,
    epoch_bounds,
    gap_words,
    grid_state,
)
from rewards.services.archive import open_archive
from rewards.services.devices import online, owned_devices, owner_now
from rewards.services.eligibility_view import ViewHeader, device_standing, supplier_grid
from rewards.services.pages import device_timeline
from rewards.services.snapshots import (
    SnapshotError,
    label,
    list_snapshots,
    proof,
    published_standing,
)
from rewards.web.session import SupplierPage
from rewards.web.templates import render

supplier_pages = APIRouter(prefix="/app/supplier", include_in_schema=False)

DeviceId = Annotated[str, PathParam(pattern=IDENTIFIER_PATTERN)]
STATES = {letter: kind for kind, letter in GRID_LETTERS.items()}  # E -> "eligible"


def _about(request: Request, view: ViewHeader | None) -> dict[str, Any]:
    """What the pages say about the eligibility view (provisional: the season so far): as
    of when (None: not built yet), from which inputs, and who builds it."""
    about: dict[str, Any] = {
        "as_of": None,
        "every_min": max(1, request.app.state.settings.eligibility_view_every_s // 60),
    }
    if view is not None:
        about["as_of"] = view.as_of.strftime("%Y-%m-%d %H:%M UTC")
        about["inputs"] = view.input_fingerprint[:12]
    return about


def _device_rows(
    request: Request, policy: SeasonPolicy, owner: str, device_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One device's rows of the view while `owner` had it, and what the page says of it."""
    found = device_standing(request.app.state.engine, policy.season_id, owner, device_id)
    if found is None:
        return [], _about(request, None)
    return found[1], _about(request, found[0])


def _published(
    request: Request, policy: SeasonPolicy, owner: str, device_id: str | None = None
) -> dict[str, Any] | None:
    """The published snapshot's word on this supplier (and device), for the pages."""
    found = published_standing(request.app.state.engine, policy.season_id, owner, device_id)
    if found is None:
        return None
    snap = found.snapshot
    return {
        "label": label(snap),
        "published_at": snap.published_at.strftime("%Y-%m-%d %H:%M UTC")
        if snap.published_at
        else "",
        "payout": found.payout,
        "epochs": {row["epoch"]: row for row in found.device_rows.iter_rows(named=True)},
        "covers": range(snap.epoch_first, snap.epoch_last + 1),
    }


OWNED_A_PAGE = 100
GRID_A_PAGE = 100  # devices a page of the grid: 2,000 rows were 3.5 MB of HTML
GridPage = Annotated[int, Query(ge=0, le=100_000)]
Search = Annotated[str | None, Query(max_length=128)]
SEARCHABLE = re.compile(r"[A-Za-z0-9._:-]+")  # an identifier's characters: nothing else matches
After = Annotated[str | None, Query(max_length=128, pattern=IDENTIFIER_PATTERN)]
State = Annotated[Literal["online", "offline", ""] | None, Query()]  # "": either
Show = Annotated[Literal["missed", ""] | None, Query()]  # the grid: devices that missed an epoch


def _owned(
    request: Request,
    owner: str,
    policy: SeasonPolicy,
    q: str | None,
    after: str | None,
    state: str | None,
) -> dict[str, Any]:
    """One page of the devices `owner` owns now (their ids containing `q`; only those
    online or offline with `state`), with the count, where the next page starts, and
    whether each device is online: seen within a liveness timeout of the newest
    heartbeat in the fleet."""
    engine = request.app.state.engine
    if q and not SEARCHABLE.fullmatch(q):  # said on the page, not a bare 422
        return {"devices": [], "total": 0, "q": q, "after": None, "next": None, "bad_q": True,
                "state": state or ""}  # fmt: skip
    found = owned_devices(
        engine, owner, limit=OWNED_A_PAGE + 1, after=after, containing=q, state=state,
        timeout_us=policy.liveness_timeout_us,
    )  # fmt: skip
    page, more = found.devices[:OWNED_A_PAGE], len(found.devices) > OWNED_A_PAGE
    timeout_us = policy.liveness_timeout_us
    return {
        "devices": page,
        "online": {d.device_id: online(d.last_seen, found.newest, timeout_us) for d in page},
        "total": found.total,
        "q": q or "",
        "state": state or "",
        "after": after,
        "next": page[-1].device_id if more and page else None,
        "page_size": OWNED_A_PAGE,
    }


@supplier_pages.get("", response_class=HTMLResponse)
def devices(
    request: Request,
    who: SupplierPage,
    policy: PolicyDep,
    q: Search = None,
    after: After = None,
    grid: GridPage = 0,
    state: State = None,
    show: Show = None,
) -> HTMLResponse:
    """My devices now (a page at a time, searchable by id, online or offline), and the
    season's device x epoch grid (GRID_A_PAGE devices a page, all of them or those not
    eligible in some epoch; the counts over all of them)."""
    owned = _owned(request, who.subject, policy, q or None, after, state or None)
    grid_of = supplier_grid(request.app.state.engine, policy.season_id, who.subject)
    about = _about(request, grid_of.view if grid_of else None)
    letters = dict(grid_of.devices) if grid_of else {}
    epochs = list(range(grid_of.view.epochs)) if grid_of else []
    counts = {kind: sum(s.count(letter) for s in letters.values())
              for kind, letter in GRID_LETTERS.items()}  # fmt: skip
    shown = sorted(d for d, s in letters.items() if s.strip(NOT_OWNED))
    if show == "missed":
        missed = (GRID_LETTERS["ineligible"], GRID_LETTERS["silent"])
        shown = [d for d in shown if any(m in letters[d] for m in missed)]
    page = shown[grid * GRID_A_PAGE : (grid + 1) * GRID_A_PAGE]
    cells = {d: {e: STATES[c] for e, c in enumerate(letters[d]) if c in STATES} for d in page}
    return render(
        request,
        "supplier.html",
        {
            "title": "My devices",
            "owned": owned,
            "grid_devices": page,
            "grid": {
                "page": grid,
                "size": GRID_A_PAGE,
                "devices": len(shown),
                "all": len(letters),
                "show": show or "",
            },
            "epochs": epochs,
            "cells": cells,
            "counts": counts,
            "as_of": about["as_of"],
            "view": about,
            "published": _published(request, policy, who.subject),
            "days": {
                e: datetime.fromtimestamp(epoch_bounds(policy, e)[0] / 1e6, UTC).strftime(
                    "%Y-%m-%d"
                )
                for e in epochs
            },
        },
    )


@supplier_pages.get("/devices/{device_id}", response_class=HTMLResponse)
def device(
    request: Request, device_id: DeviceId, who: SupplierPage, policy: PolicyDep
) -> HTMLResponse:
    """One of my devices: a timeline per epoch and each epoch and gap in words."""
    engine = request.app.state.engine
    rows, about = _device_rows(request, policy, who.subject, device_id)
    if not rows and owner_now(engine, device_id) != who.subject:
        raise HTTPException(404, "no such device among yours")
    archive = open_archive(request.app.state.settings.archive_url)
    timeline = device_timeline(engine, policy, device_id, archive)
    mine = {row["epoch"] for row in rows}  # epochs in which the device was mine
    segments: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for _, epoch, kind, s, e in timeline.segments.iter_rows():
        if epoch in mine:
            segments[epoch].append((kind, s, e))
    words: dict[int, list[str]] = defaultdict(list)
    for gap in timeline.gaps:
        start = epoch_bounds(policy, 0)[0]
        epoch = (gap.g0 - start) // policy.epoch_length_us
        if epoch in mine:
            words[epoch].append(gap_words(gap, policy, timeline.deadlines))
    epochs = [
        {
            "row": row,
            "state": grid_state(row, policy),
            "bounds": epoch_bounds(policy, row["epoch"]),
            "segments": segments.get(row["epoch"], []),
            "gaps": words.get(row["epoch"], []),
        }
        for row in rows
    ]
    return render(
        request,
        "device.html",
        {"title": f"Device {device_id}", "device_id": device_id, "epochs": epochs,
         "as_of": about["as_of"], "view": about, "kinds": KINDS,
         "published": _published(request, policy, who.subject, device_id)},
    )  # fmt: skip


@supplier_pages.get("/rewards", response_class=HTMLResponse)
def rewards(request: Request, who: SupplierPage, policy: PolicyDep, key: KeyDep) -> HTMLResponse:
    """My payout in each published snapshot, with its Merkle proof to verify in the page."""
    engine = request.app.state.engine
    payouts: list[dict[str, Any]] = []
    for snap in list_snapshots(engine, policy.season_id):
        if snap.status == "draft":
            continue
        try:
            document = proof(engine, snap, who.subject, key)
        except SnapshotError:
            document = None
        payouts.append({"snapshot": snap, "label": label(snap), "proof": document})
    by_id = {p["snapshot"].id: p for p in payouts}
    for payout in payouts:  # a superseded version says which replaced it, and what changed
        older = by_id.get(payout["snapshot"].supersedes_id)
        if older is not None:
            older["replaced_by"] = payout
    return render(request, "rewards.html", {"title": "My rewards", "payouts": payouts})
