"""The project's error types, and how a command ends on one (`exit_on_error`). This module
imports nothing of ours, so any module can use it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable


class ConfigError(ValueError):
    """One bad value in params.yaml (or a bad command-line value a stage was given)."""


class MissingDatasetError(ConfigError):
    """The dataset's files are not on disk and could not be downloaded. A ConfigError, so a stage
    reports it as one line naming where to put the files, with no traceback."""


class StageError(RuntimeError):
    """An expected failure while a stage runs, such as an input artefact that cannot be read. A
    stage reports it as one line (what, where, how to fix it) with no traceback."""


def exit_on_error(main: Callable[[], None]) -> None:
    """Run a stage's (or a command's) `main`. An expected failure (a bad value, a missing or corrupt
    input, CUDA out of memory) becomes one line on stderr that says what, where and how to fix it,
    and a non-zero exit status: 2 for a bad value, 1 for the rest. SEQUELA_TRACEBACK=1 shows the full
    traceback."""
    script = Path(sys.argv[0])
    where = f"stage {script.stem}" if script.parent.name == "stages" else "sequela"
    stage = " ".join([where, *sys.argv[1:]])
    try:
        main()
    except Exception as err:  # noqa: BLE001 - sorted into expected and unexpected below
        if os.environ.get("SEQUELA_TRACEBACK"):
            raise
        message, status = _expected(err)
        if message is None:
            raise
        print(f"error in {stage}: {message}", file=sys.stderr)
        sys.exit(status)


def _expected(err: Exception) -> tuple[str | None, int]:
    """(one line, exit status) for a failure a user can fix, (None, 0) for a bug."""
    if isinstance(err, ConfigError):
        return str(err), 2
    if isinstance(err, StageError):
        return str(err), 1
    if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
        return (
            "CUDA out of memory; lower the recipe's batch_size or defense.batch_size, or run fewer stages "
            "per GPU (docs/scaling.md)"
        ), 1
    if isinstance(err, FileNotFoundError) and err.filename:
        return (
            f"{err.filename} is missing; run `dvc repro` (not the stage script alone) so the stages that "
            f"make its inputs run first"
        ), 1
    return None, 0
