"""sequela.workers: a stage's units give the same results however many workers run them."""

import os
import threading

import torch

from sequela import workers
from sequela.engine.device import seed_everything

CPU = torch.device("cpu")


def train_tiny(seed: int) -> dict:
    """A seeded little regression fit: its weights depend on the seed and on float summation order."""
    seed_everything(seed)
    x, w_true = torch.randn(256, 32), torch.randn(32, 1)
    y = x @ w_true + 0.1 * torch.randn(256, 1)
    w = torch.zeros(32, 1, requires_grad=True)
    for _ in range(50):
        loss = (x @ w - y).pow(2).mean()
        (grad,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= 0.05 * grad
    return {"seed": seed, "w": w.detach(), "threads": torch.get_num_threads()}


def test_results_do_not_depend_on_the_worker_count(monkeypatch):
    units = [3, 1, 4, 1, 5]
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    parallel = workers.run_units(train_tiny, units, CPU)
    monkeypatch.setattr(workers, "available_cores", lambda: 1)
    assert workers.worker_count(CPU, len(units)) == 1
    threads = torch.get_num_threads()
    serial = workers.run_units(train_tiny, units, CPU)
    assert torch.get_num_threads() == threads  # the stage's own thread count is given back
    assert [r["seed"] for r in parallel] == units == [r["seed"] for r in serial]  # order kept
    for p, s in zip(parallel, serial):
        assert torch.equal(p["w"], s["w"])
        assert p["threads"] == s["threads"] == 1
    assert not torch.equal(parallel[0]["w"], parallel[1]["w"])  # the seed matters


def test_worker_count_is_bounded_by_cores_and_units(monkeypatch):
    monkeypatch.setattr(workers, "available_cores", lambda: 16)
    monkeypatch.setattr(workers, "fork_is_safe", lambda: True)
    assert workers.worker_count(CPU, 3) == 3
    assert workers.worker_count(CPU, 40) == 16
    assert workers.worker_count(torch.device("cuda"), 8) == 1


def test_cpu_units_stay_in_the_stage_process_where_forking_is_unsafe(monkeypatch):
    # on a machine with a CUDA device a process forked after a backward pass cannot run autograd
    monkeypatch.setattr(workers, "available_cores", lambda: 16)
    monkeypatch.setattr(workers.torch.cuda, "is_available", lambda: True)
    assert not workers.fork_is_safe() and workers.worker_count(CPU, 8) == 1
    assert [r["seed"] for r in workers.run_units(train_tiny, [2, 7], CPU)] == [2, 7]


def test_a_closure_over_the_stages_data_reaches_forked_workers_unpickled(monkeypatch):
    # A stage passes its state in the unit function's closure; no module global carries it.
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    monkeypatch.setattr(workers, "fork_is_safe", lambda: True)
    model = torch.nn.Linear(4, 2)  # held by the closure only
    lock = threading.Lock()  # a closure over this could not be pickled

    def unit(i: int) -> dict:
        with lock:
            return {"i": i, "pid": os.getpid(), "out": model(torch.ones(1, 4)).detach()}

    found = workers.run_units(unit, [0, 1, 2, 3], CPU)
    assert [r["i"] for r in found] == [0, 1, 2, 3]
    assert all(r["pid"] != os.getpid() for r in found)  # computed in the workers
    assert all(torch.equal(r["out"], model(torch.ones(1, 4)).detach()) for r in found)
    assert workers._RUNNING is None  # nothing of the call stays behind
