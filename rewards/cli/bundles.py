"""`rewards snapshot publish-files`: a published snapshot's public bundle (DESIGN 9), the
files anyone may download and check with tools/verify_payout.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rewards.cli._shell import err, out, shell
from rewards.cli.snapshots import SnapshotRef, _snapshot, snapshot_app


@snapshot_app.command("publish-files")
def snapshot_publish_files(
    ref: SnapshotRef,
    out_dir: Annotated[Path, typer.Option("--out", help="A new directory for the bundle.")],
) -> None:
    """The public bundle of a published snapshot: manifest, claims file (every leaf and its
    proof, pseudonymous), per-epoch totals and policy; nothing names an owner."""
    from rewards.services.public_bundle import write_public_files

    sh = shell()
    engine = sh.engine()
    snap = _snapshot(engine, ref, sh.policy.season_id)
    err.print(f"writing the public bundle of {ref} to {out_dir} ...", highlight=False)
    manifest = write_public_files(engine, snap, out_dir)
    out.print(
        f"wrote {manifest['snapshot']}'s public bundle to {out_dir}: root "
        f"{manifest['merkle_root']}, {len(manifest['files']) + 1} files; check it with "
        f"python3 tools/verify_payout.py bundle {out_dir}",
        highlight=False,
    )
