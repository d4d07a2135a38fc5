"""A snapshot's bundles (DESIGN 9): `rewards snapshot publish-files`, the public bundle
anyone may download and check with tools/verify_payout.py; `audit-bundle`, the audit
bundle for finance and auditors; and `reproduce`, which recomputes a snapshot from its
audit bundle alone."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rewards.cli._shell import AsJson, err, fail, out, print_json
from rewards.cli.snapshots import SnapshotRef, _write_out, snapshot_app

if TYPE_CHECKING:
    from rewards.services.reproduce import Check


@snapshot_app.command("publish-files")
def snapshot_publish_files(
    ref: SnapshotRef,
    out_dir: Annotated[Path, typer.Option("--out", help="A new directory for the bundle.")],
) -> None:
    """The public bundle of a published snapshot: manifest, claims file (every leaf and its
    proof, pseudonymous), per-epoch totals and policy; nothing names an owner."""
    from rewards.services.public_bundle import write_public_files

    _, manifest = _write_out(
        ref, out_dir, "writing the public bundle of",
        lambda _sh, engine, snap: write_public_files(engine, snap, out_dir),
    )  # fmt: skip
    out.print(
        f"wrote {manifest['snapshot']}'s public bundle to {out_dir}: root "
        f"{manifest['merkle_root']}, {len(manifest['files']) + 1} files; check it with "
        f"python3 tools/verify_payout.py bundle {out_dir}",
        highlight=False,
    )


@snapshot_app.command("audit-bundle")
def snapshot_audit_bundle(
    ref: SnapshotRef,
    out_dir: Annotated[Path, typer.Option("--out", help="A new directory for the bundle.")],
) -> None:
    """The audit bundle of a snapshot, for finance and auditors (never public: it names
    owners and their salts): its inputs exactly as fingerprinted, its policy, the owners'
    salts and its export, so that `rewards snapshot reproduce DIR` recomputes it."""
    from rewards.services.audit_bundle import write_audit_bundle

    _, manifest = _write_out(
        ref, out_dir, "writing the audit bundle of",
        lambda sh, engine, snap: write_audit_bundle(
            engine, snap, key=sh.key(), kept=sh.settings.snapshot_inputs_path, out=out_dir
        ),
    )  # fmt: skip
    out.print(
        f"wrote {manifest['snapshot']}'s audit bundle to {out_dir}: "
        f"{len(manifest['files']) + 1} files; reproduce it with "
        f"rewards snapshot reproduce {out_dir}",
        highlight=False,
    )


@snapshot_app.command("reproduce")
def snapshot_reproduce(
    directory: Path,
    as_json: AsJson = False,
    shard_devices: Annotated[
        int, typer.Option(min=1, help="Devices a shard: memory is about a shard's.")
    ] = 50_000,
    workers: Annotated[
        int, typer.Option(min=0, help="Local processes for the shards (0: this one).")
    ] = 0,
) -> None:
    """Recompute a snapshot from its audit bundle alone (no database, no settings): the
    input fingerprint, policy hash, content hash, Merkle root and every export file, each
    with match or mismatch and the first thing that differs. Exit 1 on any mismatch."""
    from rewards.services.computing import ComputePlan
    from rewards.services.reproduce import NotABundle, reproduce

    try:
        checks = reproduce(directory, ComputePlan(shard_devices, workers))
    except NotABundle as exc:
        fail(str(exc))
    failed = [c for c in checks if c.ok is False]
    if as_json:
        print_json({"reproduced": not failed, "checks": [asdict(c) for c in checks]})
    else:
        _print_checks(checks)
        summary = (
            "reproduced: every check matches"
            if not failed
            else f"{len(failed)} mismatches: not reproduced"
        )
        (out if not failed else err).print(summary, highlight=False)
    if failed:
        raise typer.Exit(1)


def _print_checks(checks: list[Check]) -> None:
    """Each check with match or mismatch and its first difference; the bundle's files in
    one line when they all match the manifest."""
    files = [c for c in checks if c.name.startswith("file ")]
    if files and all(c.ok for c in files):
        listed = f"{len(files)} files as the manifest lists them"
        out.print(f"{'bundle files':<34} [green]match[/] {listed}", highlight=False)
    for check in checks:
        if check in files and check.ok:
            continue
        if check.ok is None:
            verdict = "[dim]same[/]" if check.found == check.recorded else "[yellow]differs[/]"
        else:
            verdict = "[green]match[/]" if check.ok else "[bold red]MISMATCH[/]"
        out.print(f"{check.name:<34} {verdict} {check.found}", highlight=False)
        if check.difference:
            out.print(f"    first difference: {check.difference}", highlight=False)
