"""`rewards snapshot`: run, list, show, publish, diff, settle, export and prove reward
snapshots.

The snapshot services are imported inside each command, so that `rewards --help` starts
fast."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import polars as pl
import typer

from rewards.cli._progress import StageProgress
from rewards.cli._shell import (
    AsJson,
    SchedulerOption,
    _actor,
    _season_shell,
    amounts,
    err,
    fail,
    out,
    plain,
    print_json,
    shell,
    utc_now,
    with_amounts,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from rewards.cli._shell import Shell
    from rewards.services.records import SnapshotRecord
    from rewards.services.snapshots import Diff

snapshot_app = typer.Typer(
    no_args_is_help=True, help="Reward snapshots: run, publish, diff, export, prove."
)


SnapshotRef = Annotated[
    str, typer.Argument(help="SEASON-vN, or vN / N of the configured season.", show_default=False)
]


def _snapshot(engine: Engine, ref: str, season: str) -> SnapshotRecord:
    from rewards.services.snapshots import resolve

    return resolve(engine, ref, season)


def _write_out(
    ref: str,
    out_dir: Path,
    doing: str,
    write: Callable[[Shell, Engine, SnapshotRecord], dict[str, Any]],
) -> tuple[SnapshotRecord, dict[str, Any]]:
    """The snapshot `ref` of the configured season and the manifest `write` returns after
    writing it to `out_dir`, saying first what it is `doing` ("exporting", ...)."""
    sh = shell()
    engine = sh.engine()
    snap = _snapshot(engine, ref, sh.policy.season_id)
    err.print(f"{doing} {ref} to {out_dir} ...", highlight=False)
    return snap, write(sh, engine, snap)


def _snapshot_json(snap: SnapshotRecord) -> dict[str, Any]:
    """A snapshot as `--json` shows it: its label, then what it records (the policy by its
    hash only), its totals as amounts."""
    from rewards.services.snapshots import label, token_decimals

    totals = amounts(
        token_decimals(snap),
        total_pool=snap.total_pool,
        total_paid=snap.total_paid,
        total_unassigned=snap.total_unassigned,
    )
    return {"snapshot": label(snap), **plain(snap, leave_out=("policy",)), **totals}


def _diff_json(d: Diff) -> dict[str, Any]:
    """A diff's summary as `--json` shows it, amounts in the tokens of `after`."""
    from rewards.services.snapshots import label, token_decimals

    decimals = token_decimals(d.after)
    largest = pl.DataFrame(
        d.summary.largest,
        schema={"owner_id": pl.String, "before": pl.Int64, "after": pl.Int64, "delta": pl.Int64},
        orient="row",
    )
    return {
        "before": label(d.before),
        "after": label(d.after),
        **plain(d.summary, leave_out=("largest",)),
        **amounts(decimals, moved=d.summary.moved),
        "largest": with_amounts(largest, decimals, ["before", "after", "delta"]),
    }


@snapshot_app.command("run")
def snapshot_run(
    by: Annotated[str, typer.Option("--by", callback=_actor, help="Who is running it (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded), e.g. 'incident confirmed'.")],
    season: Annotated[str | None, typer.Option(help="Season ID (default: configured).")] = None,
    epochs: Annotated[
        str | None,
        typer.Option(help="A:B, both included (default: every epoch closed and settled)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Make a new version even if nothing changed.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Local processes to compute the device shards in (default: the "
            "compute_workers setting; 0: in this process). The rows are the same.",
        ),
    ] = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Compute a draft snapshot over frozen inputs; publish it with `snapshot publish`."""
    from rewards.console import print_snapshot
    from rewards.services.archive import open_archive
    from rewards.services.snapshot_runs import BadEpochs, Stages, run_now
    from rewards.services.snapshots import label

    if workers is not None and scheduler is not None:
        fail("--workers and --scheduler: give one (local processes, or a Dask cluster)")
    sh = _season_shell(season)
    shown = StageProgress("snapshot")
    stages = Stages(on_stage=shown.on_stage, on_progress=shown.on_progress)
    try:
        outcome = run_now(
            sh.engine(),
            sh.policy,
            by=by,
            reason=reason,
            epochs=epochs,
            settlement=sh.settings.settlement,
            lock_ttl=sh.settings.job_lock,
            archive=open_archive(sh.settings.archive_url),
            clock=utc_now,
            key=sh.key(),
            force=force,
            stages=stages,
            plan=sh.plan(workers=workers, scheduler=scheduler),
            keep=sh.settings.snapshot_inputs_path,
        )
    except BadEpochs as exc:  # the one refusal that names the option it came from
        fail(f"--epochs {exc}")
    snap = outcome.snapshot
    if not outcome.created:
        out.print(
            f"inputs, policy and code unchanged since {label(snap)} ({snap.status}): "
            "no new version (use --force to make one anyway)",
            highlight=False,
        )
        return
    print_snapshot(snap, out)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in stages.seconds.items())
    err.print(f"took {timings}", highlight=False)


@snapshot_app.command("list")
def snapshot_list(
    season: Annotated[str | None, typer.Option(help="Only this season.")] = None,
    as_json: AsJson = False,
) -> None:
    """Snapshots, newest first: version, status, epochs, totals, root."""
    from rewards.services.snapshots import label, list_snapshots

    found = list_snapshots(shell().engine(), season)
    if as_json:
        print_json([_snapshot_json(snap) for snap in found])
        return
    headers = ("snapshot", "status", "epochs", "created", "paid", "suppliers", "merkle_root")
    typer.echo("\t".join(headers))
    for snap in found:
        row = (
            label(snap),
            snap.status,
            f"{snap.epoch_first}-{snap.epoch_last}",
            f"{snap.created_at:%F %T}",
            str(snap.total_paid),
            str(snap.suppliers),
            snap.merkle_root,
        )
        typer.echo("\t".join(row))


@snapshot_app.command("show")
def snapshot_show(ref: SnapshotRef, as_json: AsJson = False) -> None:
    """Everything a snapshot records."""
    from rewards.console import print_snapshot

    sh = shell()
    snap = _snapshot(sh.engine(), ref, sh.policy.season_id)
    if as_json:
        print_json(_snapshot_json(snap))
    else:
        print_snapshot(snap, out)


@snapshot_app.command("publish")
def snapshot_publish(
    ref: SnapshotRef,
    by: Annotated[str, typer.Option("--by", callback=_actor, help="Who publishes (audit log).")],
    override_rollback: Annotated[
        bool,
        typer.Option(
            "--override-rollback",
            help="Publish a version older than the published one (a rollback; needs --reason).",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why the rollback (recorded in the audit log).")
    ] = None,
) -> None:
    """Make a draft the season's published snapshot; the previous one becomes superseded.

    Publishing a version older than the published one rolls the season back (DESIGN 9): it
    prints what moves and is refused unless --override-rollback and --reason are given."""
    from rewards.console import print_diff
    from rewards.services.publication import preview, publish_ref
    from rewards.services.snapshots import label

    if override_rollback and not (reason or "").strip():
        fail("--override-rollback needs --reason: say why the season goes back")
    if reason is not None and not override_rollback:
        fail("--reason is recorded only with --override-rollback")
    sh = shell()
    engine = sh.engine()
    season = sh.policy.season_id
    shown = preview(engine, ref, season)
    snap = shown.snapshot
    if shown.rollback and shown.current is not None and shown.moves is not None:
        out.print(
            f"rollback: publishing {label(snap)} replaces the newer published "
            f"{label(shown.current)}; what moves:",
            highlight=False,
        )
        print_diff(shown.moves, out)
        if not override_rollback:
            fail(
                f"{label(snap)} is older than the published {label(shown.current)}: refusing "
                "to roll back without --override-rollback --reason TEXT",
                1,
            )
    done = publish_ref(
        engine,
        ref,
        season,
        by=by,
        clock=utc_now,
        lock_ttl=sh.settings.job_lock,
        rollback_reason=reason if override_rollback else None,
    )
    previous = done.superseded
    tail = f"; {label(previous)} is now superseded" if previous else ""
    out.print(f"{label(snap)} published (merkle root {snap.merkle_root}){tail}", highlight=False)


@snapshot_app.command("diff")
def snapshot_diff(
    before: SnapshotRef,
    after: SnapshotRef,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the full tables (CSV and Parquet) here."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """What changed between two snapshots: device-epochs and suppliers, base units moved."""
    from rewards.console import print_diff
    from rewards.services.exports import write_diff
    from rewards.services.snapshots import compare

    sh = shell()
    result = compare(sh.engine(), before, after, sh.policy.season_id)
    if as_json:
        print_json(_diff_json(result))
    else:
        print_diff(result, out)
    if out_dir:
        write_diff(result, out_dir)
        (err if as_json else out).print(f"wrote the full diff to {out_dir}", highlight=False)


@snapshot_app.command("adjustments")
def snapshot_adjustments(
    paid: Annotated[str, typer.Argument(help="The published snapshot that was paid.")],
    due: Annotated[str, typer.Argument(help="The published snapshot that replaces it.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for CSV and Parquet.")],
    as_json: AsJson = False,
) -> None:
    """Per supplier, what is owed (positive) or was overpaid (negative) when DUE replaces PAID."""
    from rewards.services.exports import ADJUSTED, write_adjustments
    from rewards.services.snapshots import resolve, settlement, token_decimals

    sh = shell()
    engine = sh.engine()
    season = sh.policy.season_id
    table = settlement(engine, paid, due, season)
    decimals = token_decimals(resolve(engine, due, season))
    write_adjustments(table, decimals, out_dir)
    if as_json:
        print_json(with_amounts(table, decimals, ADJUSTED))
    owed = table.filter(pl.col("adjustment") > 0)
    overpaid = table.filter(pl.col("adjustment") < 0)
    (err if as_json else out).print(
        f"{owed.height:,} suppliers are owed {int(owed['adjustment'].sum()):,} base units, "
        f"{overpaid.height:,} were overpaid {-int(overpaid['adjustment'].sum()):,}; "
        f"wrote {out_dir}/adjustments.csv and .parquet",
        highlight=False,
    )


@snapshot_app.command("export")
def snapshot_export(
    ref: SnapshotRef,
    out_dir: Annotated[Path, typer.Option("--out", help="A new directory for the export.")],
) -> None:
    """Finance export: rewards per supplier and per device-epoch (CSV, Parquet), manifest."""
    from rewards.services.exports import export
    from rewards.services.snapshots import label

    snap, manifest = _write_out(
        ref, out_dir, "exporting", lambda _sh, engine, snap: export(engine, snap, out_dir)
    )
    out.print(
        f"exported {label(snap)} ({snap.status}) to {out_dir}: "
        f"{manifest['rows']['device_epochs']:,} device-epochs, "
        f"{manifest['rows']['suppliers']:,} suppliers, {manifest['totals']['paid']:,} base units",
        highlight=False,
    )


@snapshot_app.command("verify-export")
def snapshot_verify_export(directory: Path) -> None:
    """Check an export against its manifest.json: hashes, totals, Merkle root."""
    from rewards.services.exports import verify_export

    problems = verify_export(directory)
    for problem in problems:
        err.print(f"[bold red]mismatch:[/] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    out.print(f"{directory}: every file, total and the Merkle root match the manifest")


@snapshot_app.command("proof")
def snapshot_proof(
    ref: SnapshotRef,
    supplier: Annotated[str, typer.Option(help="The supplier's owner_id.")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the JSON here.")] = None,
) -> None:
    """A supplier's Merkle proof (JSON): leaf, sibling path and root."""
    from rewards.services.files import write_atomically
    from rewards.services.snapshots import proof

    sh = shell()
    engine = sh.engine()
    document = proof(engine, _snapshot(engine, ref, sh.policy.season_id), supplier, sh.key())
    body = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out_file:
        write_atomically(out_file, lambda p: _write_text(p, body))
        out.print(f"wrote the proof for {supplier} to {out_file}", highlight=False)
    else:
        typer.echo(body, nl=False)


def _write_text(path: Path, body: str) -> None:
    path.write_text(body, encoding="utf-8")


@snapshot_app.command("verify-proof")
def snapshot_verify_proof(
    proof_file: Path,
    root: Annotated[
        str | None,
        typer.Option(help="The published root to check against (default: the engine's)."),
    ] = None,
) -> None:
    """Check a proof file: its leaf must hash up to the published root (exit 1 when it does
    not). Without --root the root comes from the engine's database, never from the file
    (a forged file carries a root that fits it); it says which root it checked."""
    from sqlalchemy.exc import SQLAlchemyError

    from rewards.core import check_proof_document
    from rewards.services.snapshots import SnapshotError, label, root_of_record

    try:
        document = json.loads(proof_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{proof_file}: {exc}")
    if not isinstance(document, dict):
        fail(f"{proof_file}: not a proof document (a JSON object with leaf, proof, root)")
    if root is not None:
        source = "given with --root"
    else:
        try:
            snap = root_of_record(shell().engine(), document.get("leaf"))
        except (SnapshotError, SQLAlchemyError) as exc:
            reason = exc if isinstance(exc, SnapshotError) else "the database is unreachable"
            fail(
                f"no --root given and no published root to check against: {reason}; pass "
                "--root HEX from the published manifest (the root inside the file proves "
                "nothing)"
            )
        root = snap.merkle_root
        source = f"of {label(snap)} ({snap.status}) from the engine's database"
    checked = f"checked against root {root} {source}"
    pseudonymous = "format" in document
    if not check_proof_document(document, root):
        why = "does not lead to the root"
        if pseudonymous:
            why += ", or its leaf is not the commitment of its owner_id and salt"
        err.print(f"[bold red]invalid:[/] {proof_file} {why}", highlight=False)
        err.print(checked, highlight=False)
        raise typer.Exit(1)
    whose = f" ({document['owner_id']}'s commitment)" if pseudonymous else ""
    out.print(f"valid: {document['leaf']}{whose} is in the tree with root {root}", highlight=False)
    out.print(checked, highlight=False)
