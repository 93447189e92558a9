import pytest

from napari_dip.config import PRESETS, DIPConfig, describe_fields, get_config
from napari_dip.networks import level_width


def test_paper_presets_follow_the_papers_recipes():
    denoise = get_config("paper", "denoise")
    assert (denoise.channels_down, denoise.channels_up, denoise.channels_skip) == (128, 128, 4)
    assert denoise.learning_rate == 0.01 and denoise.max_iterations == 3000
    assert denoise.reg_noise_std == pytest.approx(1 / 30) and denoise.ema_weight == 0.99
    sr4, sr8 = get_config("paper", "super_resolve", 4), get_config("paper", "super_resolve", 8)
    assert (sr4.max_iterations, sr4.reg_noise_std) == (2000, 0.03)
    assert (sr8.max_iterations, sr8.reg_noise_std) == (4000, 0.05)
    inpaint = get_config("paper", "inpaint")
    assert inpaint.channels_skip == 128 and inpaint.upsample == "nearest"
    # the reference runs in the paper's arithmetic on every machine; the fast presets may not
    for config in (denoise, sr4, sr8, inpaint, get_config("bayesian", "denoise")):
        assert config.precision == "float32"
    assert {get_config(p, "denoise").precision for p in ("auto", "fast", "quick")} == {"auto"}


def test_every_field_has_a_description_and_valid_default():
    for field in describe_fields():
        assert field["doc"], field["name"]
    DIPConfig()  # defaults pass their own bounds


def test_overrides_are_validated():
    assert get_config("quick", max_iterations=7).max_iterations == 7
    with pytest.raises(ValueError, match="learning_rate=5 is out of range"):
        get_config("quick", learning_rate=5)
    with pytest.raises(ValueError, match="network='unet' is not allowed"):
        get_config("quick", network="unet")
    with pytest.raises(ValueError, match="must be an integer"):
        get_config("quick", scales=2.5)
    with pytest.raises(ValueError, match="unknown setting"):
        get_config("quick", learning_rat=0.1)


def test_unknown_preset_and_task_name_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'fastest'.*paper"):
        get_config("fastest")
    with pytest.raises(ValueError, match="unknown task 'deblur'.*denoise"):
        get_config("paper", "deblur")


@pytest.mark.parametrize("factor, message", [(None, "needs factor"), (3, "not supported"),
                                             (True, "not supported")])
def test_super_resolution_factor_is_checked(factor, message):
    with pytest.raises(ValueError, match=message):
        get_config("paper", "super_resolve", factor)


def test_presets_cover_every_task():
    for name in PRESETS:
        for task, factor in [("denoise", None), ("inpaint", None), ("super_resolve", 4)]:
            assert isinstance(get_config(name, task, factor), DIPConfig)


def test_auto_denoises_with_the_small_network_and_keeps_the_papers_for_other_tasks():
    auto, fast = get_config("auto", "denoise"), get_config("fast", "denoise")
    assert auto.learning_rate == fast.learning_rate == 0.02
    # denoising narrows the fine levels and widens the coarse ones: 8, 16, 32, 64, then 128
    # channels from full resolution down, in the encoder and the decoder
    for config in (auto, fast):
        for channels in (config.channels_down, config.channels_up):
            widths = [level_width(channels, level, config) for level in range(config.scales)]
            assert widths == [8, 16, 32, 64, 128]
    # and feeds it an 8-channel input code (more on the microscopy crops: docs/log.md)
    assert fast.input_channels == auto.input_channels == 8
    # fast's inpainting and super-resolution keep the uniform 32 channels and the 32-channel
    # code (narrowed, inpainting returned less: docs/log.md)
    inpaint = get_config("fast", "inpaint")
    assert (inpaint.top_channels, inpaint.input_channels) == (0, 32)
    assert auto.stopping == "holdout" and auto.patience > fast.patience
    # super-resolution climbs slowly: fast keeps a long patience there (docs/log.md)
    assert get_config("fast", "super_resolve", 4).patience == 1000
    # auto's inpainting waits longer for a new variance minimum: 300 stopped barbara 1.05 dB
    # short; 500 was checked on six crops it was not chosen on (docs/log.md)
    assert get_config("auto", "inpaint").patience == 500
    assert get_config("auto", "super_resolve", 4).patience == auto.patience == 300
    for task, factor in (("inpaint", None), ("super_resolve", 4)):
        auto, paper = get_config("auto", task, factor), get_config("paper", task, factor)
        assert (auto.channels_down, auto.channels_skip, auto.learning_rate) == \
            (paper.channels_down, paper.channels_skip, paper.learning_rate)
        assert auto.stopping == "variance" and auto.max_iterations == 2 * paper.max_iterations


def test_numbers_from_numpy_or_whole_floats_become_plain_settings():
    import numpy as np

    config = get_config("quick", max_iterations=np.int64(30), learning_rate=np.float32(0.01),
                        scales=3.0)
    assert config.max_iterations == 30 and type(config.max_iterations) is int
    assert type(config.learning_rate) is float and type(config.scales) is int
    with pytest.raises(ValueError, match="max_iterations=3.5 must be an integer"):
        get_config("quick", max_iterations=3.5)
    with pytest.raises(ValueError, match="learning_rate=nan must be a finite number"):
        get_config("quick", learning_rate=float("nan"))


def test_even_kernels_are_refused_with_the_sizes_that_work():
    with pytest.raises(ValueError, match=r"kernel_up=4 must be odd .* use 3 or 5"):
        get_config("quick", kernel_up=4)


def test_bayesian_burn_in_follows_a_shorter_schedule_and_must_leave_samples():
    from napari_dip.config import warm_start_config

    paper = get_config("bayesian")
    short = get_config("bayesian", max_iterations=300)
    assert short.burn_in == 300 * paper.burn_in // paper.max_iterations == 200
    assert get_config("bayesian", max_iterations=300, burn_in=50).burn_in == 50
    with pytest.raises(ValueError, match="burn_in=400 is not below max_iterations=300"):
        get_config("bayesian", max_iterations=300, burn_in=400)
    # a warm-started slice of a stack samples within its short schedule too (the preset
    # itself fits every slice from scratch: warm slices returned less)
    assert paper.warm_start_fraction == 0
    warm = warm_start_config(paper.replace(warm_start_fraction=0.25), paper.max_iterations)
    assert warm.max_iterations == 750 and 0 < warm.burn_in < warm.max_iterations


def test_a_tile_size_too_small_names_one_that_works_with_the_overlap():
    with pytest.raises(ValueError, match="raise tile_size to 65 or more") as error:
        get_config("quick", tile_size=32)
    size = int(str(error.value).split("raise tile_size to ")[1].split()[0])
    assert get_config("quick", tile_size=size).tile_size == size
