import pytest

from napari_dip.config import DIPConfig, describe_fields
from napari_dip.presets import get_config


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
