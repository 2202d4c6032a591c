"""Progress bars for the loops that run for minutes: training, trigger searches, PGD, BadEncoder.

One tqdm bar per loop, on stderr, refreshed at most once a second. `disable=None` hides it where
stderr is not a terminal (CI logs, a redirected `dvc repro`), so logs keep one line per result."""

from __future__ import annotations

from typing import Iterable

from tqdm import tqdm


def bar(work: int | Iterable, desc: str) -> tqdm:
    """A bar of `work` steps (an int: call .update() per step) or over an iterable (iterate it)."""
    if isinstance(work, int):
        return tqdm(total=work, desc=desc, mininterval=1.0, disable=None, leave=False)
    return tqdm(work, desc=desc, mininterval=1.0, disable=None, leave=False)
