"""The step machinery: precision, memory layout, compile, CUDA graph replay, the optimiser."""

import numpy as np
import pytest
import torch

import napari_dip
from napari_dip import iter_restore, restore
from napari_dip.engine.measures import psnr


def test_bfloat16_autocast_restores_like_float32(noisy_cell):
    """Reduced precision (here bfloat16 on the CPU) converges like float32 on a small image."""
    clean, noisy = noisy_cell
    results = {p: restore(noisy, preset="quick", max_iterations=60, precision=p, device="cpu")
               for p in ("float32", "bfloat16")}
    gains = {p: psnr(r, clean) - psnr(noisy, clean) for p, r in results.items()}
    assert gains["bfloat16"] > 3.0
    assert gains["bfloat16"] > gains["float32"] - 1.0  # not worse than float32


def test_snapshots_report_the_arithmetic_the_fit_ran_in(noisy_cell, monkeypatch):
    """A user can tell (and record) whether a run used reduced precision: on a CPU with native
    bfloat16, "auto" switches to it for a large enough image, and says so."""
    from napari_dip.engine import device

    _, noisy = noisy_cell
    plain = list(iter_restore(noisy, preset="quick", max_iterations=2, device="cpu"))[-1]
    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: True)
    monkeypatch.setattr(device, "CPU_BFLOAT16_MIN_PIXELS", noisy.size)
    reduced = list(iter_restore(noisy, preset="quick", max_iterations=2, device="cpu"))[-1]
    assert plain.precision == "float32" and reduced.precision == "bfloat16"
    assert napari_dip.run_record(reduced)["precision"] == "bfloat16"
    assert not np.array_equal(plain.estimate, reduced.estimate)


def test_a_channels_last_fit_restores_like_a_contiguous_one_and_says_which_it_ran(noisy_cell):
    """The layout only changes the order of the rounding: both fits raise the PSNR alike, each
    repeats itself bit for bit, and the snapshot and run record name the layout (a run is
    repeated exactly only in the same one)."""
    clean, noisy = noisy_cell
    last = {}
    for layout in ("channels_last", "contiguous", "channels_last"):
        runs = list(iter_restore(noisy, preset="quick", max_iterations=30, seed=0, device="cpu",
                                 memory_format=layout))
        assert runs[-1].memory_format == layout
        assert napari_dip.run_record(runs[-1])["memory_format"] == layout
        if layout in last:
            np.testing.assert_array_equal(runs[-1].estimate, last[layout].estimate)
        last[layout] = runs[-1]
    gains = {layout: psnr(run.estimate, clean) - psnr(noisy, clean) for layout, run in last.items()}
    assert gains["channels_last"] > 3.0
    assert abs(gains["channels_last"] - gains["contiguous"]) < 0.5
    assert not np.array_equal(last["channels_last"].estimate, last["contiguous"].estimate)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_on_cuda_matches_float32(noisy_cell, precision):
    clean, noisy = noisy_cell
    reference = restore(noisy, preset="quick", max_iterations=150, device="cuda",
                        precision="float32")
    mixed = restore(noisy, preset="quick", max_iterations=150, device="cuda", precision=precision)
    assert psnr(mixed, clean) > psnr(reference, clean) - 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_generator_on_cuda_raises_psnr(noisy_cell):
    clean, noisy = noisy_cell
    result = restore(noisy, preset="quick", max_iterations=100, device="cuda", compile="default")
    assert psnr(result, clean) > psnr(noisy, clean) + 3.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_cuda_graph_replays_follow_the_eager_fit(noisy_cell, monkeypatch, precision):
    """Steps replayed from a recorded CUDA graph take the fit where launching every kernel takes
    it (gradients overwritten, not accumulated, between replays), and are really used."""
    from napari_dip.engine import stepper

    clean, noisy = noisy_cell
    replays = []
    original = stepper.GraphedStep.__call__
    monkeypatch.setattr(stepper.GraphedStep, "__call__",
                        lambda self, x: replays.append(1) or original(self, x))
    settings = dict(preset="quick", max_iterations=150, device="cuda", precision=precision, seed=3)
    graphed = restore(noisy, **settings)
    assert len(replays) == 150 - stepper.GRAPH_WARMUP
    eager = restore(noisy, **settings, cuda_graph="off")
    assert len(replays) == 150 - stepper.GRAPH_WARMUP  # "off" records nothing
    gains = {name: psnr(result, clean) - psnr(noisy, clean)
             for name, result in (("graphed", graphed), ("eager", eager))}
    assert gains["graphed"] > 3.0
    # GPU fits are not bit-for-bit repeatable (atomic additions in the backward pass): two
    # eager runs differ by some tenths of a dB here too
    assert gains["graphed"] > gains["eager"] - 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_replayed_step_overwrites_the_gradients_it_computes():
    from napari_dip.engine.stepper import GraphedStep

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(4, 1, 3, padding=1)).cuda()
    target = torch.rand(1, 1, 16, 16, device="cuda")
    net_input = torch.rand(1, 2, 16, 16, device="cuda")

    def step_loss(x, recording=False):
        output = network(x)
        return output, ((output - target) ** 2).mean()

    network.zero_grad(set_to_none=True)
    step_loss(net_input)[1].backward()
    eager = [p.grad.clone() for p in network.parameters()]
    step = GraphedStep(step_loss, network, net_input)
    for _ in range(2):  # replayed twice at the same weights: the same gradients, not their sum
        step(net_input)
        for parameter, expected in zip(network.parameters(), eager):
            torch.testing.assert_close(parameter.grad, expected, rtol=1e-2, atol=1e-6)


def test_a_step_that_cannot_be_recorded_falls_back_to_launching_kernels():
    """Where recording the step as a CUDA graph fails (without CUDA, or an operation that cannot
    be recorded), the fit is told why and goes on without it, no recorded gradients left."""
    from napari_dip.engine.stepper import record_step

    def unrecordable(net_input, recording):
        raise RuntimeError("operation not permitted when stream is capturing")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    network = torch.nn.Conv2d(1, 1, 3).to(device)
    network.weight.grad = torch.ones_like(network.weight)
    with pytest.warns(RuntimeWarning, match="CUDA graph.*cuda_graph='off'"):
        assert record_step(unrecordable, network, torch.zeros(1, 1, 4, 4, device=device)) is None
    assert network.weight.grad is None


def _adam_step(optimizer_for, network, gradients):
    optimizer = optimizer_for(network)
    for parameter, gradient in zip(network.parameters(), gradients):
        parameter.grad = gradient.clone()
    optimizer.step()
    return optimizer, [p.detach().clone() for p in network.parameters()]


def test_the_fits_optimiser_takes_the_same_step_as_plain_adam():
    from napari_dip.engine.networks import build_generator
    from napari_dip.engine.stepper import make_optimizer
    from napari_dip.presets import get_config

    config = get_config("fast", "denoise", learning_rate=0.05, weight_decay=0.01)
    torch.manual_seed(0)
    start = build_generator(config, 1).state_dict()
    gradients = [torch.randn_like(p) for p in build_generator(config, 1).parameters()]
    networks = [build_generator(config, 1) for _ in range(2)]
    for network in networks:
        network.load_state_dict(start)
    before = [p.detach().clone() for p in networks[1].parameters()]
    ours, stepped = _adam_step(lambda n: make_optimizer(n, config), networks[0], gradients)
    _, reference = _adam_step(lambda n: torch.optim.Adam(n.parameters(), lr=0.05,
                                                         weight_decay=0.01), networks[1], gradients)
    moved = max((a - b).abs().max().item() for a, b in zip(reference, before))
    assert moved > 0.01  # the step moved the weights by about the learning rate
    for a, b in zip(stepped, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    assert ours.defaults["fused"] == (version >= (2, 4))  # fused on the CPU from 2.4


def test_without_fused_adam_the_fit_falls_back_to_the_plain_loop(noisy_cell, monkeypatch):
    clean, noisy = noisy_cell
    plain_adam = torch.optim.Adam

    def adam_without_fused(params, fused=None, **options):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point "
                               "Tensors of supported devices")
        return plain_adam(params, **options)

    monkeypatch.setattr(torch.optim, "Adam", adam_without_fused)
    result = restore(noisy, preset="quick", max_iterations=40, seed=0)
    assert psnr(result, clean) > psnr(noisy, clean) + 5.0


def _stepper(loss_of, precision="bfloat16"):
    from napari_dip.engine.stepper import Stepper
    from napari_dip.presets import get_config

    torch.manual_seed(0)
    network = torch.nn.Conv2d(2, 1, 3, padding=1)
    config = get_config("quick", precision=precision, memory_format="contiguous")
    return Stepper(network, torch.rand(1, 2, 8, 8), loss_of, config, torch.device("cpu"),
                   pixels=64)


def test_a_non_finite_loss_in_reduced_precision_falls_back_to_float32_for_good():
    calls = []

    def loss_of(output):
        calls.append(1)
        return output.mean() * (float("inf") if len(calls) == 1 else 1.0)

    stepper = _stepper(loss_of)
    assert stepper.precision == "bfloat16"
    restored = []
    output, loss = stepper.forward_backward(1, stepper.code, lambda: restored.append(1))
    assert torch.isfinite(loss) and stepper.precision == "float32" and not restored
    assert output.dtype == torch.float32
    stepper.update(loss)


def test_weights_that_stay_bad_in_float32_are_restored_and_the_step_redone():
    calls = []

    def loss_of(output):
        calls.append(1)
        return output.mean() * (float("nan") if len(calls) <= 2 else 1.0)

    stepper = _stepper(loss_of)
    restored = []
    _, loss = stepper.forward_backward(1, stepper.code, lambda: restored.append(1))
    assert restored == [1] and torch.isfinite(loss) and len(calls) == 3


def test_a_float32_stepper_steps_the_weights_by_the_gradient():
    stepper = _stepper(lambda output: (output ** 2).mean(), precision="float32")
    before = [p.detach().clone() for p in stepper.network.parameters()]
    _, loss = stepper.forward_backward(1, stepper.code, lambda: None)
    stepper.update(loss)
    assert stepper.precision == "float32" and stepper.memory_format == "contiguous"
    assert all(not torch.equal(a, b) for a, b in zip(before, stepper.network.parameters()))
