"""A worker plugin for the failure tests, importable by Dask's worker processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin


class KillOnce(WorkerPlugin):
    """Kills its worker's process (SIGKILL, nothing cleaned up) as the first task of the
    cluster starts executing; `marker` records that it happened, so only once."""

    name = "kill-once"

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing":
            return
        try:
            with self.marker.open("x") as note:  # exclusive: one worker wins, once
                note.write(str(key))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
