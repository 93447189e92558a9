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
