"""A supplier's door: only ever their own devices, eligibility and payouts; the owner is
the token's subject, never a parameter, and what is not theirs is the same 404 as what
does not exist."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from rewards.api.deps import (
    EPOCH_KEY_PATTERN,
    EngineDep,
    KeyDep,
    Limit,
    PolicyDep,
    SettingsDep,
    SnapshotRef,
    Supplier,
)
from rewards.api.schemas import (
    DeviceOut,
    DevicePage,
    EligibilityPage,
    ProofStepOut,
    RewardOut,
)
from rewards.core import IDENTIFIER_PATTERN
from rewards.services.devices import owned_devices
from rewards.services.eligibility_view import page_json, supplier_standing
from rewards.services.snapshots import SnapshotError, proof, resolve

supplier = APIRouter(prefix="/v1/supplier", tags=["supplier"])


@supplier.get("/devices", response_model=DevicePage)
def supplier_devices(
    who: Supplier,
    engine: EngineDep,
    policy: PolicyDep,
    limit: Limit = 100,
    after: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    state: Annotated[Literal["online", "offline"] | None, Query()] = None,
) -> DevicePage:
    """Your devices now, by device_id (only those online or offline, with `state`: seen
    within a liveness timeout of the fleet's newest heartbeat, or not); pass `next_after`
    as `after` for the next page."""
    rows = owned_devices(
        engine, who.subject, limit=limit, after=after, state=state,
        timeout_us=policy.liveness_timeout_us,
    ).devices  # fmt: skip
    return DevicePage(
        devices=[
            DeviceOut(
                device_id=r.device_id,
                gpu_model=r.gpu_model,
                gpu_count=r.gpu_count,
                status=r.status,
                last_seen=r.last_seen,
            )
            for r in rows
        ],
        next_after=rows[-1].device_id if len(rows) == limit else None,
    )


@supplier.get(
    "/eligibility",
    response_model=EligibilityPage,
    responses={503: {"description": "The season's eligibility has not been computed yet."}},
)
def supplier_eligibility(
    who: Supplier,
    engine: EngineDep,
    policy: PolicyDep,
    device_id: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    epoch: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    after: Annotated[str | None, Query(pattern=EPOCH_KEY_PATTERN)] = None,
    limit: Limit = 100,
) -> Response:
    """Your device-epochs of the season so far (owner as of each epoch's start): what
    counted, eligible or not, and why in words; by device then epoch. Refreshed by a job
    every few minutes (`as_of` says when); a device that is not yours is simply absent."""
    key = None
    if after is not None:
        device, _, number = after.rpartition("/")
        key = (device, int(number))
    standing = supplier_standing(
        engine,
        policy.season_id,
        who.subject,
        limit=limit,
        device_id=device_id,
        epoch=epoch,
        after=key,
    )
    if standing is None:
        raise HTTPException(
            503, "eligibility for this season has not been computed yet", {"Retry-After": "60"}
        )
    # built by polars in one go (EligibilityPage's shape, which the suite checks): per-row
    # models cost more than the rest of the request together
    return Response(page_json(standing), media_type="application/json")


@supplier.get("/rewards/{ref}", response_model=RewardOut)
def supplier_reward(
    ref: SnapshotRef, who: Supplier, engine: EngineDep, settings: SettingsDep, key: KeyDep
) -> RewardOut:
    """Your payout in a published (or superseded) snapshot, with its Merkle proof."""
    try:
        snap = resolve(engine, ref, settings.season)
        if snap.status == "draft":
            raise SnapshotError("drafts are not shown to suppliers")
        document: dict[str, Any] = proof(engine, snap, who.subject, key)
    except SnapshotError:
        raise HTTPException(404, "no such published snapshot or payout") from None
    return RewardOut(
        format=document.get("format"),
        snapshot=document["snapshot"],
        owner_id=who.subject,
        salt=document.get("salt"),
        amount=document["leaf"][3],
        amount_decimal=document["amount_decimal"],
        leaf=document["leaf"],
        proof=[ProofStepOut(**step) for step in document["proof"]],
        root=document["root"],
    )
