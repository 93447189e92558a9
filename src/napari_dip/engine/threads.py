"""How many CPU threads each fit of a run gets: as asked, or the fastest by measurement.

On a CPU the thread count changes a fit's arithmetic (torch splits its sums by thread), so a
fit runs whole at one count, and a run repeats bit for bit only with the counts it ran with.
With ``threads="auto"``, before a fit, a few steps of a throwaway copy of that fit (its network,
input code and optimiser state copied, or built afresh from the same seed) are timed at one
thread and at all of them, taking turns (:func:`~.device.fastest_thread_count`), more threads
only where other work leaves their cores idle meanwhile; the fit then runs at the faster count.
On a busy machine OpenMP threads spin-wait for each other and more
threads can be many times slower (``docs/benchmarks/speed.md``). The choice is measured again
between fits (the next slice, tile or seeded run) once :data:`RECHECK_S` seconds have passed,
never inside one.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..config import DIPConfig, check_threads
from .device import fastest_thread_count, torch_threads
from .fit import FitStep, fit
from .problem import Observation

PROBE_WARMUP = 1
"""Untimed probe steps per candidate count (the first steps allocate their buffers)."""
PROBE_REPEATS = 4
"""Timed probe steps per candidate count; each count's time is their sum."""
RECHECK_S = 180.0
"""Seconds after a measurement from which the next fit measures again."""
PROBE_SHARE = 10
"""A fit with fewer than this many times the probe's steps is not measured for: it keeps the
count chosen before (one thread if none was): the probe would cost more than it could save."""


class FitThreads:
    """The CPU threads of each fit of one run.

    ``threads``: a count (every fit runs with it), None (the process's count as it is) or
    ``"auto"`` (measured, see the module). ``device``: off the CPU no count is set or measured.
    The candidates of ``"auto"`` are one thread and the count torch has between fits, the
    caller's (a caller that caps it, such as the widget leaving a core to the viewer, caps the
    candidates too). :attr:`ran` lists each fit's count, in the order the fits ran.
    """

    def __init__(self, threads, device: torch.device, *, recheck_s: float = RECHECK_S) -> None:
        check_threads(threads)
        self.threads, self.device, self.recheck_s = threads, torch.device(device), recheck_s
        self.ran: list[int | None] = []
        self._chosen: int | None = None
        self._measured_at = -float("inf")

    @property
    def measures(self) -> bool:
        return self.threads == "auto" and self.device.type == "cpu"

    def count_for(self, budget: int, probe: Callable[[], Callable[[int], object]]) -> int | None:
        """The count the next fit of ``budget`` steps runs with (None: leave torch's as it
        is); ``probe()`` makes that fit's probe step (called only when measuring)."""
        if self.device.type != "cpu" or self.threads is None:
            return None
        if not self.measures:
            return self.threads
        candidates = sorted({1, torch.get_num_threads()})
        steps = (PROBE_WARMUP + PROBE_REPEATS) * len(candidates)
        due = time.perf_counter() - self._measured_at >= self.recheck_s
        if len(candidates) == 1 or budget < PROBE_SHARE * steps:
            return self._chosen or 1
        if due or self._chosen is None:
            self._chosen = fastest_thread_count(probe(), candidates, warmup=PROBE_WARMUP,
                                                repeats=PROBE_REPEATS)
            self._measured_at = time.perf_counter()
        return self._chosen

    @contextmanager
    def fitting(self, observation: Observation, config: DIPConfig, *, seed: int,
                network: nn.Module | None = None, code: torch.Tensor | None = None,
                optimizer_state: dict | None = None) -> Iterator[int | None]:
        """Run the block, a fit with these arguments (those of :func:`~.fit.fit`, on this
        run's device), at the count :meth:`count_for` chooses for it; yields the count (None
        off the CPU) and adds it to :attr:`ran`."""
        def probe():
            return probe_of_fit(observation, config, seed=seed, device=self.device,
                                network=network, code=code, optimizer_state=optimizer_state)

        with torch_threads(self.count_for(config.max_iterations, probe)) as count:
            count = count if self.device.type == "cpu" else None
            self.ran.append(count)
            yield count


def probe_of_fit(observation: Observation, config: DIPConfig, *, seed: int,
                 device: torch.device, network: nn.Module | None = None,
                 code: torch.Tensor | None = None, optimizer_state: dict | None = None,
                 ) -> Callable[[int], object]:
    """One step of a throwaway copy of a fit, at a given thread count: the fit's network,
    code and optimiser state are copied (or, for a fresh fit, built again from ``seed``, which
    reads no global random state), so that the fit itself starts as if no probe had run."""
    trial = dataclasses.replace(config, report_every=1)
    state = {"steps": None}

    def fresh_steps() -> Iterator[FitStep]:
        return fit(observation, trial, seed=seed, device=device,
                   network=None if network is None else copy.deepcopy(network),
                   code=None if code is None else code.detach().clone(),
                   optimizer_state=copy.deepcopy(optimizer_state))

    def step(threads: int) -> None:
        with torch_threads(threads):
            if state["steps"] is None:
                state["steps"] = fresh_steps()
            if next(state["steps"], None) is None:  # the trial ended: start it again
                state["steps"] = fresh_steps()
                next(state["steps"])

    return step
