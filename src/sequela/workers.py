"""Run the independent units of one stage (the defenses of a cell, the models of a sequela cell, the
defenses of an ablation point) side by side on a CPU.

Why: a small model's training step is too small for torch's intra-op threads. On the 2-core
machine a defend stage used 58 s of CPU in 35 s of wall time with 2 threads; the same work in two
single-threaded processes keeps both cores busy. The units are already independent (each starts
from its own copy of the model with its own seeded generator), so they can run in any order and
in any process.

Determinism: on a CPU every unit runs single-threaded, whether it runs in a worker or, where one
core or no `fork` is available, in the stage's own process. Its result therefore does not depend on
how many workers ran, nor on the host's core count. On a GPU the units run one after another in
the stage's process: one device gains nothing from being shared.

Workers are forked after the stage has loaded its data and model, so they share them without
copying or pickling; each returns a small dict. A unit that fails fails the stage.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Sequence, TypeVar

import torch

Unit = TypeVar("Unit")


def available_cores() -> int:
    """The cores this stage may use: SEQUELA_CPUS where a slot of the parallel runner (fanout.py)
    sets it, else those the process may run on."""
    if os.environ.get("SEQUELA_CPUS"):
        return max(1, int(os.environ["SEQUELA_CPUS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fork_is_safe() -> bool:
    """Whether a forked worker may run autograd. Once a process has run a backward pass on a machine
    that has a CUDA device, torch's autograd engine keeps a thread per device, and a process forked
    from it cannot run backward at all (torch raises); so CPU units on a GPU machine stay in the
    stage's process."""
    return "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_available()


def worker_count(device: torch.device, units: int) -> int:
    """How many processes a stage's units run in: 1 on a GPU, else min(cores, units), and 1
    where processes cannot be forked safely."""
    if device.type != "cpu" or not fork_is_safe():
        return 1
    return max(1, min(available_cores(), units))


def _single_thread() -> None:
    torch.set_num_threads(1)


def run_units(fn: Callable[[Unit], dict], units: Sequence[Unit], device: torch.device) -> list[dict]:
    """`[fn(u) for u in units]`, in that order, spread over `worker_count` forked processes on a CPU.

    `fn` must be a module-level function (the pool sends its name, not its code); everything it
    reads besides its argument it takes from module globals set before this call, which the
    forked workers inherit."""
    if device.type != "cpu":
        return [fn(u) for u in units]
    workers = worker_count(device, len(units))
    if workers == 1:
        threads = torch.get_num_threads()
        _single_thread()  # the same arithmetic as in a worker
        try:
            return [fn(u) for u in units]
        finally:
            torch.set_num_threads(threads)
    with multiprocessing.get_context("fork").Pool(workers, initializer=_single_thread) as pool:
        # chunksize 1: units differ tenfold in cost (NC against FT), so hand them out one by one.
        return pool.map(fn, units, chunksize=1)
