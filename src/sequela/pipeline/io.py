"""Atomic file output and safetensors I/O.

Every output is written to a temporary file in the same folder and then renamed over its final
name, so a stage killed mid-write never leaves a half-written model, metric or table behind.
Tensors are stored only as safetensors: loading one can never run code from the file.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file

from sequela.pipeline.errors import StageError

REBUILD = "it is corrupt or half-copied: delete it and rerun `dvc repro`"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A stage killed (SIGKILL) mid-write leaves its temporary file behind, since no `finally` runs:
    # the rerun removes it, so it never ends up in a DVC-cached output folder.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(obj, path: str | Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _exists(path: Path) -> None:
    if not path.is_file():  # FileNotFoundError with its filename: run_stage names the missing input
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    _exists(path)
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error type (and OSError) for a bad file
        raise StageError(f"{path} cannot be read as safetensors ({str(err).splitlines()[0]}); {REBUILD}") from err


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata header of a safetensors file, without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    _exists(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as err:  # safetensors raises its own error type for a file that is not one
        raise StageError(
            f"{path} cannot be read as safetensors ({str(err).splitlines()[0]}); "
            "model files are safetensors (a pickle is never loaded)"
        ) from err


def read_json(path: str | Path):
    path = Path(path)
    _exists(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StageError(f"{path} is not valid JSON ({err}); {REBUILD}") from err
