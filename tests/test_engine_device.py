"""The compute device and the arithmetic it runs in."""

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

    def __init__(self, seconds: dict[int, float], first_call_extra: float = 0.0) -> None:
        self.seconds, self.extra, self.now, self.calls = seconds, first_call_extra, 0.0, []

    def clock(self) -> float:
        return self.now

    def __call__(self, threads: int) -> None:
        self.now += self.seconds[threads] + (self.extra if threads not in self.calls else 0.0)
        self.calls.append(threads)


@pytest.mark.parametrize("seconds, fastest", [
    ({1: 1.0, 2: 1.5}, 1),  # busy cores: the second thread spin-waits
    ({1: 2.0, 2: 1.0}, 2),  # idle cores: it halves the step
    ({1: 1.0, 2: 0.9}, 1),  # little gain: the fewer threads leave a core to other work
])
def test_the_fastest_thread_count_is_the_one_whose_steps_take_least_time(seconds, fastest):
    from napari_dip.engine.device import fastest_thread_count

    work = FakeWork(seconds)
    assert fastest_thread_count(work, [2, 1], warmup=1, repeats=3, clock=work.clock) == fastest
    assert work.calls == [1, 2] * 4  # the counts take turns: a change of load hits both alike


def test_warm_up_steps_are_not_timed_and_a_single_candidate_is_not_probed():
    from napari_dip.engine.device import fastest_thread_count

    work = FakeWork({1: 1.0, 2: 0.5}, first_call_extra=100.0)  # allocation on the first step
    assert fastest_thread_count(work, [1, 2], warmup=1, repeats=3, clock=work.clock) == 2
    busy = FakeWork({1: 1.0, 2: 2.5})  # clearly slower: dropped after the first round
    assert fastest_thread_count(busy, [1, 2], warmup=1, repeats=3, clock=busy.clock) == 1
    assert busy.calls == [1, 2]
    idle = FakeWork({1: 1.0})
    assert fastest_thread_count(idle, [1], clock=idle.clock) == 1 and idle.calls == []
    with pytest.raises(ValueError, match="positive whole numbers"):
        fastest_thread_count(idle, [0, 1])
