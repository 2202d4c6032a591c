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

Workers are forked after the stage has loaded its data and model, and the unit function is a closure
over them, passed to `run_units`; so the workers share them without copying or pickling, and each
returns a small dict. A unit that fails fails the stage.
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


# The function the pool's workers run, set by run_units for the length of one call, before it forks
# them: a forked worker inherits it, so the unit function's closure (the stage's model and data)
# reaches the workers without pickling, and only the units and the results cross between processes.
_RUNNING: Callable | None = None


def _run_inherited(unit):
    return _RUNNING(unit)


def run_units(fn: Callable[[Unit], dict], units: Sequence[Unit], device: torch.device) -> list[dict]:
    """`[fn(u) for u in units]`, in that order, spread over `worker_count` forked processes on a CPU.

    `fn` may be any callable, a closure over the stage's data included: the workers inherit it. The
    units and the dicts `fn` returns must pickle."""
    global _RUNNING
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
    _RUNNING = fn
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_single_thread) as pool:
            # chunksize 1: units differ tenfold in cost (NC against FT), so hand them out one by one.
            return pool.map(_run_inherited, units, chunksize=1)
    finally:
        _RUNNING = None
