"""The compute device and the arithmetic it runs in."""

import os

import pytest
import torch


def test_auto_precision_on_the_cpu_is_bfloat16_only_for_large_images_on_capable_cpus(
        monkeypatch):
    from napari_dip.engine import device
    from napari_dip.engine.device import CPU_BFLOAT16_MIN_PIXELS, autocast_dtype

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: True)
    assert autocast_dtype("auto", cpu, pixels=CPU_BFLOAT16_MIN_PIXELS) == torch.bfloat16
    assert autocast_dtype("auto", cpu, pixels=128 * 128) is None  # conversions outweigh the gain
    assert autocast_dtype("float32", cpu, pixels=CPU_BFLOAT16_MIN_PIXELS) is None
    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: False)  # emulated: slow
    assert autocast_dtype("auto", cpu, pixels=CPU_BFLOAT16_MIN_PIXELS) is None
    assert autocast_dtype("bfloat16", cpu) == torch.bfloat16  # asked for: given
    with pytest.raises(ValueError, match="precision='double'.*float32"):
        autocast_dtype("double", cpu)


def test_auto_memory_format_is_channels_last_on_cuda_and_on_cpus_with_native_bfloat16(
        monkeypatch):
    from napari_dip.engine import device
    from napari_dip.engine.device import use_channels_last

    cpu = torch.device("cpu")
    assert use_channels_last("auto", torch.device("cuda"))
    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: True)
    assert use_channels_last("auto", cpu)
    assert not use_channels_last("contiguous", cpu)
    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: False)  # measured slower
    assert not use_channels_last("auto", cpu)
    assert use_channels_last("channels_last", cpu)  # asked for: given
    with pytest.raises(ValueError, match="memory_format='nhwc'.*channels_last"):
        use_channels_last("nhwc", cpu)


class FakeWork:
    """A probe step whose cost per thread count is given, on a clock that only it advances:
    the timing is exact, so the choice cannot flake."""

    def __init__(self, seconds: dict[int, float], first_call_extra: float = 0.0,
                 first_step_extra: float = 0.0) -> None:
        self.seconds, self.extra, self.now, self.calls = seconds, first_call_extra, 0.0, []
        self.first_step_extra = first_step_extra  # paid once, by whichever count runs first

    def clock(self) -> float:
        return self.now

    def idle(self) -> None:
        return None  # the machine's idle time unknown: the times alone decide

    def __call__(self, threads: int) -> None:
        self.now += self.seconds[threads] + (self.extra if threads not in self.calls else 0.0)
        self.now += 0.0 if self.calls else self.first_step_extra
        self.calls.append(threads)


def choose(work: FakeWork, candidates: list[int]) -> int:
    """The count chosen for ``work``, on its clock and its machine's idle time."""
    from napari_dip.engine.device import fastest_thread_count

    return fastest_thread_count(work, candidates, warmup=1, repeats=3, clock=work.clock,
                                idle=work.idle)


@pytest.mark.parametrize("seconds, fastest", [
    ({1: 1.0, 2: 1.5}, 1),  # busy cores: the second thread spin-waits
    ({1: 2.0, 2: 1.0}, 2),  # idle cores: it halves the step
    ({1: 1.0, 2: 0.9}, 1),  # little gain: the fewer threads leave a core to other work
])
def test_the_fastest_thread_count_is_the_one_whose_steps_take_least_time(seconds, fastest):

    work = FakeWork(seconds)
    assert choose(work, [2, 1]) == fastest
    assert work.calls == [1, 2] * 4  # the counts take turns: a change of load hits both alike


def test_warm_up_steps_are_not_timed_and_a_single_candidate_is_not_probed():
    from napari_dip.engine.device import fastest_thread_count

    work = FakeWork({1: 1.0, 2: 0.5}, first_call_extra=100.0)  # allocation on the first step
    assert choose(work, [1, 2]) == 2
    busy = FakeWork({1: 1.0, 2: 2.5})  # clearly slower: dropped after the first timed round
    assert choose(busy, [1, 2]) == 1
    assert busy.calls == [1, 2, 1, 2]
    idle = FakeWork({1: 1.0})
    assert choose(idle, [1]) == 1 and idle.calls == []
    with pytest.raises(ValueError, match="positive whole numbers"):
        fastest_thread_count(idle, [0, 1])


def test_the_one_off_cost_of_a_process_first_step_does_not_drop_the_count_that_paid_it():
    """A process's very first step (kernels loaded, buffers allocated) can take many times as
    long as a later one; it falls on one thread, which runs first. Judged on the warm-up round, one
    thread was dropped on an idle machine where it was in fact the faster count."""

    work = FakeWork({1: 0.06, 2: 0.07}, first_step_extra=1.2)
    assert choose(work, [1, 2]) == 1
    assert work.calls == [1, 2] * 4


class SharedCores(FakeWork):
    """:class:`FakeWork` on two cores, the other one's idle share given (1.0: free)."""

    def __init__(self, seconds: dict[int, float], other_core_idle: float) -> None:
        super().__init__(seconds)
        self.other_core_idle = other_core_idle

    def idle(self) -> tuple[float, float]:
        ticks = self.now * 100  # 100 ticks a second, as Linux counts
        return self.other_core_idle * ticks, ticks


@pytest.mark.parametrize("other_core_idle, chosen", [(1.0, 2), (0.9, 2), (0.5, 1), (0.0, 1)])
def test_a_second_thread_is_used_only_where_another_core_was_idle_during_the_probe(
        other_core_idle, chosen):
    """Measured on a two-core machine with another process busy on one core: the probe's two
    threads were faster for a few steps, then the fit ran many times slower than on one."""

    work = SharedCores({1: 1.0, 2: 0.5}, other_core_idle)
    assert choose(work, [1, 2]) == chosen
    if chosen == 1:  # seen while one thread ran: two are never tried, the probe costs one step
        assert work.calls == [1]


def test_the_machine_idle_time_is_read_where_the_system_reports_it(tmp_path):
    from napari_dip.engine.device import idle_cpu_jiffies

    assert idle_cpu_jiffies(str(tmp_path / "missing")) is None
    reading = idle_cpu_jiffies()
    if reading is not None:  # Linux
        idle, elapsed = reading
        assert 0 <= idle <= elapsed * len(os.sched_getaffinity(0))
