"""RunSpec: one JSON document for a run, and the older documents it still reads."""

import json

import pytest

from napari_dip import get_config
from napari_dip.cli import load_config_file
from napari_dip.spec import FORMAT, RunSpec, document_kind, load_options, record


def test_a_spec_round_trips_through_json():
    spec = RunSpec(task="super_resolve", factor=2, preset="quick",
                   overrides={"max_iterations": 7, "learning_rate": 0.005}, seed=3,
                   device="cpu", threads=2, channel_axis=-1, intensity_range=(0.0, 10.0))
    document = json.loads(spec.to_json())
    assert document["napari_dip_run"] == FORMAT and document["config"]["max_iterations"] == 7
    again = RunSpec.from_dict(document)
    assert again == spec and again.config() == spec.config()


def test_a_spec_with_a_ready_config_repeats_its_settings():
    config = get_config("fast", "denoise", max_iterations=9)
    spec = RunSpec(preset=config, seed=1)
    assert RunSpec.from_dict(json.loads(spec.to_json())).config() == config


def test_a_document_repeats_the_settings_it_ran_with_if_the_preset_changed_since():
    document = RunSpec(preset="quick").to_dict()
    document["config"]["learning_rate"] = 0.0042  # what the preset gave back then
    assert RunSpec.from_dict(document).config().learning_rate == 0.0042


def test_a_record_with_its_outcome_beside_the_spec_loads():
    spec = RunSpec(preset="quick", seed=4)
    record = {**spec.to_dict(), "status": "complete", "slices": [{"iterations": 3}]}
    assert RunSpec.from_dict(record) == spec


def _old_record(config):
    """A batch run record as format 1 wrote it (batch._record_header and save_result)."""
    return {"napari_dip_record": 1, "status": "complete", "task": "denoise", "factor": None,
            "seed": 2, "axes": "ZYX", "threads": None, "slices_per_task": None, "mask": None,
            "config": config.to_dict(), "source": {"path": "/data/in.tif", "size": 1,
                                                   "mtime_ns": 1},
            "mask_source": None, "preset": "quick", "requested_device": "cpu",
            "versions": {"napari-dip": "0.1.0"}, "host": "lab", "input": {"path": "in.tif"},
            "output": {"path": "out.tif"}, "device": "cpu (3 threads)", "threads_used": 3,
            "intensity_range": [0.0, 1.0], "timings": {"total_s": 1.0},
            "slices": [{"index": [0], "pass": 0, "iterations": 3, "precision": "bfloat16",
                        "memory_format": "channels_last"},
                       {"index": [1], "pass": 0, "iterations": 3, "precision": "bfloat16",
                        "memory_format": "channels_last"}]}


def test_an_old_batch_record_still_repeats_its_run(tmp_path):
    config = get_config("quick", "denoise", max_iterations=3, learning_rate=0.005)
    path = tmp_path / "out.tif.json"
    path.write_text(json.dumps(_old_record(config)))
    assert document_kind(_old_record(config)) == "record"
    spec = RunSpec.load(path)
    assert (spec.task, spec.preset, spec.seed, spec.device, spec.threads, spec.axes) == \
        ("denoise", "quick", 2, "cpu", 3, "ZYX")
    # what "auto" chose on that machine is pinned, so that the run repeats bit for bit
    assert spec.config() == config.replace(precision="bfloat16", memory_format="channels_last")
    assert load_config_file(path)["precision"] == "bfloat16"


def test_old_layer_metadata_still_repeats_its_run(tmp_path):
    config = get_config("quick", "super_resolve", 2, max_iterations=4)
    metadata = {"napari_dip": {  # as the widget's _add_result wrote it, saved whole
        "source_layer": "cells", "task": "super_resolve", "factor": 2, "preset": "quick",
        "seed": 5, "device_choice": "auto", "overrides": {"max_iterations": 4},
        "region": {}, "stack_axes": [], "finished": True, "slices_done": 1, "n_slices": 1,
        "iterations": 4, "loss": 0.01, "seconds": 1.5, "device": "cpu (1 threads)",
        "precision": "float32", "memory_format": "contiguous", "backtracks": 0,
        "weight_noise": 0.0, "stopped_early": False, "best_iteration": None,
        "config": config.to_dict(), "threads": 1, "channel_axis": None, "rgb": False,
        "intensity_range": [0.0, 255.0]}}
    path = tmp_path / "layer.json"
    path.write_text(json.dumps(metadata))
    spec = RunSpec.load(path)
    assert (spec.task, spec.factor, spec.seed, spec.device, spec.threads) == \
        ("super_resolve", 2, 5, None, 1)
    assert spec.config() == config.replace(precision="float32", memory_format="contiguous")
    assert RunSpec.from_dict(metadata["napari_dip"]) == spec  # its entry alone, too


def test_an_old_option_file_still_loads_and_leaves_out_what_it_does_not_give(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("preset: quick\nmax-iterations: 3\nlearning_rate: 0.005\nseed: 7\n")
    assert load_options(path) == {"preset": "quick", "max_iterations": 3,
                                  "learning_rate": 0.005, "seed": 7}
    spec = RunSpec.load(path)
    assert spec.seed == 7 and spec.config().max_iterations == 3


@pytest.mark.parametrize("document, message", [
    ({"learning_rat": 0.1}, r"unknown option\(s\) \['learning_rat'\]; known options are"),
    ({"seed": -1}, "seed must be an integer from 0 to 2\\*\\*32 - 1"),
    ({"threads": 0}, "threads must be a positive whole number or 'auto'"),
    ({"threads": "all"}, "threads must be a positive whole number or 'auto'"),
    ({"intensity_range": [3, 1]}, "intensity_range=.* low < high"),
    ({"learning_rate": 5}, "learning_rate=5 is out of range"),
    ({"napari_dip_run": 99}, "format 99; this version reads format 2 .* upgrade napari-dip"),
])
def test_a_bad_document_is_refused_naming_the_key_and_the_fix(document, message):
    with pytest.raises(ValueError, match=message):
        RunSpec.from_dict(document)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a mapping of option names to values"):
        RunSpec.load(path)


def test_pinning_keeps_what_auto_chose_only_where_every_fit_agrees():
    spec = RunSpec(preset="quick")  # precision and memory layout left to "auto"
    agreed = spec.pinned([{"precision": "bfloat16", "memory_format": "contiguous"}] * 2)
    assert (agreed.config().precision, agreed.config().memory_format) == \
        ("bfloat16", "contiguous")
    split = spec.pinned([{"precision": "bfloat16"}, {"precision": "float32"}])
    assert split.config().precision == "auto"


def test_a_record_is_the_run_document_pinned_to_what_ran_with_the_outcome_beside_it():
    spec = RunSpec(preset="quick", seed=4, device="cpu")
    outcome = {"status": "complete", "threads_used": 3,
               "slices": [{"precision": "float32", "memory_format": "contiguous"}] * 2}
    document = record(spec, outcome)
    ran = RunSpec.from_dict(document)
    assert {key: document[key] for key in outcome} == outcome
    assert (ran.threads, ran.config().precision, ran.config().memory_format) == \
        (3, "float32", "contiguous")
    assert ran.to_dict() == {key: document[key] for key in ran.to_dict()}
    assert record(RunSpec(threads=2), outcome)["threads"] == 2  # as asked, kept
    with pytest.raises(ValueError, match=r"outcome keys \['device'\] would hide the run's own"):
        record(spec, {"device": "cpu (3 threads)"})


def test_threads_default_to_auto_and_pinning_keeps_the_count_every_fit_ran_with():
    spec = RunSpec(preset="quick")
    assert spec.threads == "auto" and RunSpec.from_dict(spec.to_dict()) == spec
    assert spec.pinned([{"threads": 1}, {"threads": 1}]).threads == 1
    assert spec.pinned([{"threads": 1}, {"threads": 2}]).threads == "auto"  # no one count
    assert spec.pinned([{"threads": None}]).threads == "auto"  # off the CPU
    assert RunSpec(preset="quick", threads=2).pinned([{"threads": 1}]).threads == 2
