"""Task "deconvolve": the PSF through the API, plan and RunSpec; data_term="auto"."""

import json

import numpy as np
import pytest
import torch

import napari_dip as nd
from napari_dip.api import psf_source, run_record
from napari_dip.engine.convolution import convolve
from napari_dip.engine.measures import psnr
from napari_dip.engine.plan import plan
from napari_dip.engine.psf import gaussian_psf, psf_description
from napari_dip.presets import get_config
from napari_dip.spec import RunSpec

SHORT = dict(preset="quick", max_iterations=10)


def _blurred_squares(sigma=2.0, noise=0.01, side=32):
    yy, xx = np.mgrid[:side, :side]
    clean = 0.2 + 0.6 * ((yy // 8 + xx // 8) % 2)
    psf = gaussian_psf(sigma)
    blurred = convolve(torch.from_numpy(clean)[None, None], torch.from_numpy(psf))[0, 0]
    observed = blurred.numpy() + np.random.default_rng(0).normal(0, noise, clean.shape)
    return clean, observed, psf


def test_a_delta_psf_makes_deconvolution_denoising_bit_for_bit():
    _, observed, _ = _blurred_squares()
    deconvolved = nd.restore(observed, task="deconvolve", psf=np.ones((1, 1)), **SHORT)
    denoised = nd.restore(observed, task="denoise", **SHORT)
    assert np.array_equal(deconvolved, denoised)


def test_a_40_step_fit_makes_a_blurred_image_sharper_than_it_was():
    clean, observed, psf = _blurred_squares()
    restored = nd.restore(observed, task="deconvolve", psf=psf, preset="quick",
                          max_iterations=40, scales=3, learning_rate=0.05, reg_noise_std=0.0,
                          result="last")
    assert psnr(restored, clean) > psnr(observed, clean) + 0.5


def test_a_model_psf_gives_the_same_result_as_its_array():
    _, observed, psf = _blurred_squares()
    from_model = nd.restore(observed, task="deconvolve",
                            psf={"model": "gaussian", "sigma": 2.0}, **SHORT)
    from_array = nd.restore(observed, task="deconvolve", psf=psf, **SHORT)
    assert np.array_equal(from_model, from_array)


def test_a_stack_is_deconvolved_slice_by_slice_with_one_psf():
    _, observed, _ = _blurred_squares()
    stack = np.stack([observed, observed[::-1]])
    snapshots = list(nd.iter_restore_stack(stack, task="deconvolve",
                                           psf={"model": "gaussian", "sigma": 2.0}, **SHORT))
    assert snapshots[-1].result.shape == stack.shape
    assert {s.index for s in snapshots} == {(0,), (1,)}


@pytest.mark.parametrize("psf, words", [
    (np.zeros((0, 3)), "empty"),
    (np.full((3, 3), np.nan), "NaN"),
    (-np.ones((3, 3)), "sum"),
    (np.ones((41, 41)), "larger than the image"),
    (np.ones((3, 5, 5)), "3D"),
    ({"model": "gaussian", "sigma": -1}, "sigma must be a positive"),
    ({"model": "disc", "radius": 2}, "unknown PSF model"),
    ({"sigma": 2}, "names neither a model"),
    (None, "needs a PSF"),
])
def test_bad_psfs_are_refused_before_any_fit(psf, words):
    _, observed, _ = _blurred_squares()
    with pytest.raises(ValueError, match=words):
        nd.iter_restore(observed, task="deconvolve", psf=psf, **SHORT)
    with pytest.raises(ValueError, match=words):
        nd.iter_restore_stack(observed[None], task="deconvolve", psf=psf, **SHORT)


def test_a_psf_is_refused_for_the_other_tasks():
    _, observed, psf = _blurred_squares()
    with pytest.raises(ValueError, match="only used by task.*deconvolve"):
        nd.restore(observed, task="denoise", psf=psf, **SHORT)


def test_an_array_that_is_not_the_recorded_one_is_refused():
    _, observed, psf = _blurred_squares()
    spec = RunSpec(task="deconvolve", preset="quick", psf=psf_description(psf))
    with pytest.raises(ValueError, match="not the one the run describes"):
        plan(observed, spec, psf=gaussian_psf(1.0))
    with pytest.raises(ValueError, match="pass its pixels as psf="):
        plan(observed, spec)


def test_the_spec_records_the_psf_and_a_model_repeats_from_the_document():
    _, observed, psf = _blurred_squares()
    array_spec = RunSpec(task="deconvolve", psf=psf_source(psf)[1])
    assert array_spec.to_dict()["psf"] == {"shape": [17, 17],
                                          "sha256": psf_description(psf)["sha256"]}
    model = {"model": "gaussian", "sigma": 2.0}
    spec = RunSpec(task="deconvolve", preset="quick", psf=psf_source(model)[1],
                   overrides={"max_iterations": 10})
    document = json.loads(spec.to_json())
    assert document["psf"] == {"model": "gaussian", "sigma": 2.0, "shape": [17, 17]}
    repeated = RunSpec.from_dict(document)
    assert repeated == spec
    first = [s.estimate for s in nd.engine.plan.run(plan(observed, spec, stack=False))][-1]
    again = [s.estimate for s in nd.engine.plan.run(plan(observed, repeated, stack=False))][-1]
    assert np.array_equal(first, again)


def test_a_psf_file_is_read_and_a_changed_file_refused(tmp_path):
    import tifffile

    psf = gaussian_psf(1.5)
    path = tmp_path / "psf.tif"
    tifffile.imwrite(path, psf.astype(np.float32))
    array, description = psf_source({"path": str(path)})
    assert description["path"] == str(path) and description["shape"] == [13, 13]
    tifffile.imwrite(path, gaussian_psf(2.0).astype(np.float32))
    with pytest.raises(ValueError, match="changed since the run"):
        psf_source(description)


def test_deconvolution_takes_denoising_presets_with_a_total_variation_term_and_headroom():
    # a total-variation term in noise units and intensity headroom
    # (docs/benchmarks/deconvolution.md)
    for preset in ("auto", "fast"):
        config = get_config(preset, "deconvolve")
        assert config.replace(tv_weight=0.0, tv_scaling="none",
                              intensity_headroom=1.0) == get_config(preset, "denoise")
        assert config.data_term == "auto"
        assert (config.tv_weight, config.tv_scaling, config.intensity_headroom) == \
            (1.0, "noise", 1.5)
    assert get_config("paper", "deconvolve") == get_config("paper", "denoise")


def test_auto_data_term_picks_poisson_for_photon_counts_and_reports_the_estimate():
    rng = np.random.default_rng(0)
    signal = np.linspace(5, 200, 96)[None, :].repeat(96, axis=0)
    counts = rng.poisson(signal).astype(np.float32)
    last = list(nd.iter_restore(counts, data_term="auto", preset="quick",
                                max_iterations=2))[-1]
    assert last.config.data_term == "poisson"
    estimate = last.noise_estimate
    assert estimate["data_term"] == "poisson"
    assert estimate["noise_model"]["gain"] == pytest.approx(1.0, rel=0.2)
    assert run_record(last)["noise_estimate"] == estimate


def test_auto_data_term_falls_back_to_gaussian_where_the_noise_cannot_be_measured():
    _, observed, _ = _blurred_squares()  # 32 x 32: too few pixels for the estimate
    last = list(nd.iter_restore(observed, task="deconvolve", psf=gaussian_psf(2.0),
                                data_term="auto", **SHORT))[-1]
    assert last.config.data_term == "gaussian"
    assert last.noise_estimate["noise_model"] is None
    assert "pixels" in last.noise_estimate["note"]


@pytest.mark.parametrize("data_term, expected", [("poisson", "float32"),
                                                 ("gaussian", "bfloat16")])
def test_deconvolution_under_the_poisson_deviance_keeps_float32_where_auto_picks_bfloat16(
        monkeypatch, data_term, expected):
    # under bfloat16 such a fit stopped early, below its own observation
    from napari_dip.engine import device

    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: True)
    _, observed, psf = _blurred_squares(side=256)
    last = None
    for last in nd.iter_restore(np.clip(observed, 0, None) * 100, task="deconvolve", psf=psf,
                                preset="quick", max_iterations=1, data_term=data_term,
                                precision="auto"):
        pass
    assert last.precision == expected
