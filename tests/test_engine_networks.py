import pytest
import torch

from napari_dip.presets import get_config
from napari_dip.engine.networks import build_generator, count_parameters


@pytest.mark.parametrize("network", ["skip", "hourglass", "deep_decoder"])
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_generators_map_code_to_image_of_requested_channels(network, channels):
    config = get_config("quick", network=network, channels_down=8, channels_up=8, scales=3)
    net = build_generator(config, channels)
    size = 32
    r = net.input_reduction
    code_channels = 8 if network == "deep_decoder" else config.input_channels
    out = net(torch.rand(1, code_channels, size // r, size // r)).detach()
    assert out.shape == (1, channels, size, size)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0  # sigmoid output


def test_paper_denoising_network_matches_the_paper_size():
    # the paper's 5-scale 128/128/4 skip network for RGB has about 2.2 million weights
    net = build_generator(get_config("paper", "denoise"), 3)
    assert 2.1e6 < count_parameters(net) < 2.3e6


def test_deep_decoder_has_about_100k_parameters_at_128_channels():
    net = build_generator(get_config("paper", network="deep_decoder"), 3)
    assert 95_000 < count_parameters(net) < 110_000


def test_hourglass_without_skips_has_no_skip_branches():
    config = get_config("quick", network="hourglass")
    net = build_generator(config, 1)
    assert not any("skip" in name and p.numel() for name, p in net.named_parameters())


def test_nearest_and_bilinear_upsampling_both_build():
    for mode in ("nearest", "bilinear"):
        net = build_generator(get_config("quick", upsample=mode), 1)
        assert net(torch.rand(1, 16, 32, 32)).shape == (1, 1, 32, 32)


def test_deep_decoder_refuses_a_guide():
    with pytest.raises(ValueError, match="Deep Decoder takes no guide"):
        build_generator(get_config("quick", network="deep_decoder"), 1, in_channels=3)


def test_top_channels_narrows_the_fine_levels_only():
    """top_channels=16 gives 16, 32, 64, 128, 128 channels from full resolution down: far fewer
    weights and much less arithmetic at full resolution, the same output shape."""
    from napari_dip.engine.networks import level_width

    config = get_config("paper", top_channels=16)
    assert [level_width(128, level, config) for level in range(5)] == [16, 32, 64, 128, 128]
    narrow = build_generator(config, out_channels=1)
    wide = build_generator(get_config("paper"), out_channels=1)
    assert count_parameters(narrow) < 0.6 * count_parameters(wide)
    z = torch.rand(1, 32, 64, 64)
    assert narrow(z).shape == (1, 1, 64, 64)
    top_convs = [m for m in narrow.body.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.out_channels == 16 for m in top_convs)


def test_padding_keeps_bfloat16_under_autocast_and_changes_no_value():
    """CPU autocast would widen bfloat16 activations to float32 for reflection padding (and the
    next convolution narrow them again, forward and backward); the generator pads in the
    activations' own dtype instead, which gives the same output to the bit."""
    from napari_dip.engine.networks import ReflectionPad

    config = get_config("auto", "denoise")
    torch.manual_seed(0)
    net = build_generator(config, 1)
    widening = build_generator(config, 1)
    widening.load_state_dict(net.state_dict())
    for module in widening.modules():
        for name, child in module.named_children():
            if isinstance(child, ReflectionPad):
                setattr(module, name, torch.nn.ReflectionPad2d(child.padding))
    x = torch.rand(1, config.input_channels, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = ReflectionPad(1)(x.bfloat16())
        out, reference = net(x), widening(x)
    assert padded.dtype == torch.bfloat16 and padded.shape == (1, config.input_channels, 66, 66)
    assert torch.equal(out, reference)


def test_channel_concatenation_hands_back_gradients_in_each_inputs_layout():
    """The skip connections' concatenation is ``torch.cat`` forward and backward, except that
    in channels-last memory each input gets its share of the gradient densely laid out (a
    strided view sent the backward kernels behind it down slow paths)."""
    from napari_dip.engine.networks import concat_channels

    grad = torch.rand(1, 20, 8, 8).contiguous(memory_format=torch.channels_last)
    received = {}
    for name, concat in (("ours", concat_channels), ("torch", lambda *t: torch.cat(t, dim=1))):
        torch.manual_seed(0)
        a, b = (torch.rand(1, c, 8, 8).contiguous(memory_format=torch.channels_last)
                .requires_grad_() for c in (4, 16))
        a2, b2 = a * 1, b * 1  # not leaves: their hooks see the gradient as handed back
        seen = []
        for t in (a2, b2):
            t.register_hook(seen.append)
        out = concat(a2, b2)
        out.backward(grad)
        received[name] = (out.detach(), seen)
    assert torch.equal(received["ours"][0], received["torch"][0])
    for ours, plain in zip(received["ours"][1], received["torch"][1]):
        assert torch.equal(ours, plain)
        assert ours.is_contiguous(memory_format=torch.channels_last)
    assert not received["torch"][1][1].is_contiguous(memory_format=torch.channels_last)
