"""The batch command line: round trips, safety, resume, masks, config files and Dask."""

import hashlib
import json
import logging

import numpy as np
import pytest
import tifffile

from napari_dip import get_config
from napari_dip.batch import dask as batch_dask
from napari_dip.batch import jobs as batch_jobs
from napari_dip.batch import run as batch_run
from napari_dip.cli import main
from napari_dip.config import describe_fields
from napari_dip.io.tiff import read_tiff
from napari_dip.spec import RunSpec


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# a tiny, short fit: small generator (2 scales), 4 steps per slice
FAST = ["--preset", "quick", "--max-iterations", "4", "--report-every", "2", "--scales", "2",
        "--quiet"]


def _write_stack(path, seed=0, shape=(3, 16, 16)):
    """A ZYX uint16 ImageJ stack with pixel size 0.1 micron and z spacing 0.5."""
    rng = np.random.default_rng(seed)
    data = (1000 + 200 * rng.standard_normal(shape)).clip(0, 65535).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(10.0, 10.0),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 0.5})
    return data


def _cluster(distributed, workers=1):
    """A Dask cluster of single-threaded workers in this process."""
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                                    dashboard_address=None)


def _one_slice_per_task(cluster):
    """Options that run a batch on ``cluster`` with every stack split into one-slice tasks."""
    return ["--dask", cluster.scheduler_address, "--slices-per-task", "1"]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(path):
    return json.loads(path.with_name(path.name + ".json").read_text())


def _as_format_1(record):
    """``record`` (format 2) as format 1 wrote it before: the settings as asked (``"auto"``
    not pinned), the device asked for as ``requested_device``, the outcome's ``device`` and
    ``intensity_range`` under those names."""
    config = get_config(record["preset"], record["task"], record["factor"]).to_dict()
    asked = {k: v for k, v in record["overrides"].items()
             if not (k in ("precision", "memory_format") and config[k] == "auto")}
    old = {k: v for k, v in record.items()
           if k not in ("napari_dip_run", "overrides", "channel_axis", "device",
                        "device_used", "intensity_range", "intensity_range_used")}
    return {**old, "napari_dip_record": 1, "config": {**config, **asked},
            "threads": record["threads"] if record["threads"] != record["threads_used"] else None,
            "requested_device": record["device"], "device": record["device_used"],
            "intensity_range": record["intensity_range_used"]}


def test_zyx_stack_round_trips_with_metadata_and_a_full_run_record(tmp_path):
    source = tmp_path / "in" / "stack.tif"
    source.parent.mkdir()
    _write_stack(source)
    before = _digest(source)

    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), "--seed", "3",
                 "--learning-rate", "0.02", *FAST]) == 0

    assert _digest(source) == before  # the input's bytes are unchanged
    result = read_tiff(tmp_path / "out" / "stack.tif")
    assert result.data.dtype == np.uint16 and result.data.shape == (3, 16, 16)
    assert result.axes == "ZYX" and result.resolution == pytest.approx((10.0, 10.0))
    assert result.imagej["unit"] == "micron" and result.imagej["spacing"] == 0.5

    record = _record(tmp_path / "out" / "stack.tif")
    assert record["status"] == "complete" and record["seed"] == 3
    expected = get_config("quick", "denoise", max_iterations=4, report_every=2, scales=2,
                          learning_rate=0.02)
    ran = {key: record["slices"][0][key] for key in ("precision", "memory_format")}
    assert record["config"] == {**expected.to_dict(), **ran}  # what "auto" chose, pinned
    assert record["input"]["path"] == str(source) and record["input"]["axes"] == "ZYX"
    assert record["output"]["path"] == str(tmp_path / "out" / "stack.tif")
    assert set(record["versions"]) >= {"napari-dip", "torch", "numpy", "tifffile", "python"}
    assert "cpu" in record["device_used"] or "cuda" in record["device_used"]
    assert record["timings"]["restore_s"] > 0
    assert [s["index"] for s in record["slices"]] == [[0], [1], [2]]
    assert all(s["iterations"] >= 1 and np.isfinite(s["loss"]) for s in record["slices"])


def test_ome_hyperstack_with_channels_keeps_axes_and_channel_names(tmp_path):
    source = tmp_path / "cells.ome.tif"
    data = np.random.default_rng(5).integers(100, 4000, (2, 2, 16, 16)).astype(np.uint16)
    tifffile.imwrite(source, data, ome=True,
                     metadata={"axes": "TCYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
                               "Channel": {"Name": ["dapi", "gfp"]}})
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), *FAST]) == 0
    result = read_tiff(tmp_path / "out" / "cells.ome.tif")
    assert result.flavour == "ome" and result.axes == "TCYX" and result.data.shape == data.shape
    assert [c["Name"] for c in result.ome["channels"]] == ["dapi", "gfp"]
    assert result.ome["PhysicalSizeX"] == pytest.approx(0.2)
    record = _record(tmp_path / "out" / "cells.ome.tif")
    assert [s["index"] for s in record["slices"]] == [[0], [1]]  # T looped, C restored together


def test_super_resolve_scales_the_image_plane_and_divides_the_pixel_size(tmp_path):
    source = tmp_path / "small.tif"
    _write_stack(source, shape=(2, 8, 8))
    assert main(["super-resolve", str(source), "--factor", "2", "--out",
                 str(tmp_path / "out"), *FAST]) == 0
    result = read_tiff(tmp_path / "out" / "small.tif")
    assert result.data.shape == (2, 16, 16) and result.data.dtype == np.uint16
    assert result.resolution == pytest.approx((20.0, 20.0))  # 0.05 micron pixels
    assert _record(tmp_path / "out" / "small.tif")["factor"] == 2


def test_tiled_stack_through_the_command_line(tmp_path, capsys):
    source = tmp_path / "large.tif"
    data = _write_stack(source, shape=(2, 24, 28))
    out = tmp_path / "out"
    assert main(["denoise", str(source), "--out", str(out), "--tile-size", "16",
                 "--tile-overlap", "4", *FAST]) == 0
    result = read_tiff(out / "large.tif")
    assert result.data.shape == data.shape and result.data.dtype == np.uint16
    record = _record(out / "large.tif")
    assert record["config"]["tile_size"] == 16
    assert [(s["index"], s["n_tiles"]) for s in record["slices"]] == [([0], 4), ([1], 4)]
    assert main(["denoise", str(source), "--out", str(out), "--overwrite", "--tile-size", "16",
                 "--tile-overlap", "8", *FAST]) == 2
    assert "lower tile_overlap to at most 7" in capsys.readouterr().err


def test_slices_in_one_batch_through_the_command_line_get_a_record_each(tmp_path):
    source = tmp_path / "stack.tif"
    data = _write_stack(source, shape=(3, 16, 16))
    out = tmp_path / "out"
    assert main(["denoise", str(source), "--out", str(out), "--slice-batch", "2", *FAST]) == 0
    assert read_tiff(out / "stack.tif").data.shape == data.shape
    record = _record(out / "stack.tif")
    assert record["config"]["slice_batch"] == 2
    assert [s["index"] for s in record["slices"]] == [[0], [1], [2]]


def test_a_corrupt_file_is_reported_the_others_written_and_the_exit_code_non_zero(tmp_path,
                                                                                  capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _write_stack(folder / "a.tif", seed=1, shape=(1, 16, 16))
    (folder / "broken.tif").write_bytes(b"II*\x00 truncated acquisition")
    _write_stack(folder / "c.tif", seed=2, shape=(1, 16, 16))

    assert main(["denoise", str(folder), "--out", str(tmp_path / "out"), *FAST]) == 1

    err = capsys.readouterr().err
    assert "2 written, 0 already complete, 1 failed" in err
    reason = next(line for line in err.splitlines() if line.startswith("  failed:"))
    assert "broken.tif" in reason and "not a readable TIFF image" in reason
    assert (tmp_path / "out" / "a.tif").is_file() and (tmp_path / "out" / "c.tif").is_file()
    assert not (tmp_path / "out" / "broken.tif").exists()
    assert _record(tmp_path / "out" / "broken.tif")["status"] == "failed"


def test_resume_after_an_interrupted_batch_processes_only_what_is_missing(tmp_path,
                                                                        monkeypatch):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i, name in enumerate("abc"):
        _write_stack(folder / f"{name}.tif", seed=i, shape=(1, 16, 16))

    real_run_job = batch_run.run_job

    def killed_during_b(job, on_snapshot=None):
        if job.input.name == "b.tif":
            # what a kill leaves: the output renamed into place but no run record yet,
            # and a temporary file of the next write
            (out / "b.tif").write_bytes(b"written before the kill")
            (out / ".b.tif.x1y2.part.json").write_text("{")
            raise KeyboardInterrupt
        return real_run_job(job, on_snapshot)

    monkeypatch.setattr(batch_run, "run_job", killed_during_b)
    assert main(["denoise", str(folder), "--out", str(out), *FAST]) == 130
    assert (out / "a.tif.json").is_file() and not (out / "c.tif").exists()
    finished_a = (out / "a.tif.json").read_bytes()

    ran = []
    monkeypatch.setattr(batch_run, "run_job",
                        lambda job, on_snapshot=None: ran.append(job.input.name)
                        or real_run_job(job, on_snapshot))
    assert main(["denoise", str(folder), "--out", str(out), "--resume", *FAST]) == 0
    assert ran == ["b.tif", "c.tif"]
    assert (out / "a.tif.json").read_bytes() == finished_a
    assert read_tiff(out / "b.tif").data.shape == (16, 16)
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "a.tif.json", "b.tif",
                                                     "b.tif.json", "c.tif", "c.tif.json"]

    # with other settings, resume redoes finished outputs instead of mixing results
    ran.clear()
    assert main(["denoise", str(folder), "--out", str(out), "--resume", "--seed", "1",
                 *FAST]) == 0
    assert ran == ["a.tif", "b.tif", "c.tif"]


def test_inpaint_matches_masks_by_file_name(tmp_path, capsys):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b", "orphan"):
        _write_stack(images / f"{name}.tif", shape=(2, 16, 16))
    hole = np.zeros((16, 16), np.uint8)
    hole[4:8, 4:8] = 1
    tifffile.imwrite(masks / "a.tif", hole)
    tifffile.imwrite(masks / "b_mask.tif", np.stack([hole, hole.T]), photometric="minisblack")

    assert main(["inpaint", str(images), "--mask-dir", str(masks), "--out", str(out),
                 *FAST]) == 1
    assert _record(out / "a.tif")["mask"] == str(masks / "a.tif")
    assert _record(out / "b.tif")["mask"] == str(masks / "b_mask.tif")
    assert not (out / "orphan.tif").exists()
    assert "no mask named orphan.tif" in capsys.readouterr().err


def test_refuses_an_out_folder_that_would_overwrite_an_input(tmp_path, capsys):
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(1, 16, 16))
    before = _digest(source)
    assert main(["denoise", str(source), "--out", str(tmp_path / "." / ""), *FAST]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert _digest(source) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]


def test_refuses_an_out_folder_that_would_overwrite_a_mask_and_says_so(tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _write_stack(images / "stack.tif", shape=(1, 16, 16))
    tifffile.imwrite(masks / "stack.tif", np.eye(16, dtype=np.uint8))
    before = _digest(masks / "stack.tif")
    assert main(["inpaint", str(images), "--mask-dir", str(masks), "--out", str(masks),
                 *FAST]) == 2
    assert f"would overwrite the mask {masks / 'stack.tif'}" in capsys.readouterr().err
    assert _digest(masks / "stack.tif") == before


def test_existing_outputs_are_kept_unless_resume_or_overwrite(tmp_path, capsys):
    source, out = tmp_path / "stack.tif", tmp_path / "out"
    _write_stack(source, shape=(1, 16, 16))
    out.mkdir()
    (out / "stack.tif").write_bytes(b"someone's file")
    assert main(["denoise", str(source), "--out", str(out), *FAST]) == 1
    assert "already has results" in capsys.readouterr().err
    assert (out / "stack.tif").read_bytes() == b"someone's file"
    assert main(["denoise", str(source), "--out", str(out), "--overwrite", *FAST]) == 0
    assert read_tiff(out / "stack.tif").data.shape == (16, 16)


def test_config_file_sets_options_and_the_command_line_wins(tmp_path):
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(1, 16, 16))
    settings = tmp_path / "settings.yaml"
    settings.write_text("preset: quick\nmax-iterations: 3\nreport_every: 3\nscales: 2\n"
                        "learning_rate: 0.005\nseed: 7\n")
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), "--config",
                 str(settings), "--seed", "2", "--quiet"]) == 0
    record = _record(tmp_path / "out" / "stack.tif")
    assert record["preset"] == "quick" and record["seed"] == 2
    assert record["config"]["learning_rate"] == 0.005 and record["config"]["max_iterations"] == 3

    # a run record repeats its run
    assert main(["denoise", str(source), "--out", str(tmp_path / "again"), "--config",
                 str(tmp_path / "out" / "stack.tif.json"), "--quiet"]) == 0
    again = _record(tmp_path / "again" / "stack.tif")
    ran = {key: record["slices"][0][key] for key in ("precision", "memory_format")}
    assert again["config"] == {**record["config"], **ran} and again["seed"] == 2  # auto pinned


def test_a_record_is_the_run_document_and_repeats_the_run_bit_for_bit(tmp_path):
    from napari_dip.cli import build_parser, request_from_args
    from napari_dip.spec import FORMAT, repeatable

    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(2, 16, 16))
    command = ["denoise", str(source), "--out", str(tmp_path / "out"), "--seed", "5",
               "--learning-rate", "0.02", *FAST]
    assert main(command) == 0
    record = _record(tmp_path / "out" / "stack.tif")
    document = repeatable(request_from_args(build_parser().parse_args(command)),
                          record).to_dict()
    assert record["napari_dip_run"] == FORMAT
    assert {key: record[key] for key in document} == document  # plus the outcome beside it
    assert RunSpec.from_dict(record).to_dict() == document

    assert main(["denoise", str(source), "--out", str(tmp_path / "again"), "--config",
                 str(tmp_path / "out" / "stack.tif.json"), "--quiet"]) == 0
    again, first = (read_tiff(tmp_path / d / "stack.tif").data for d in ("again", "out"))
    np.testing.assert_array_equal(again, first)
    assert {key: _record(tmp_path / "again" / "stack.tif")[key] for key in document} == document


def test_a_record_from_before_still_resumes_and_repeats_its_run(tmp_path, capsys):
    source, out = tmp_path / "stack.tif", tmp_path / "out"
    _write_stack(source, shape=(2, 16, 16))
    assert main(["denoise", str(source), "--out", str(out), *FAST]) == 0
    old = _as_format_1(_record(out / "stack.tif"))
    (out / "stack.tif.json").write_text(json.dumps(old))
    assert main(["denoise", str(source), "--out", str(out), "--resume", *FAST]) == 0
    assert "0 written, 1 already complete" in capsys.readouterr().err

    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["denoise", str(source), "--out", str(tmp_path / "again"), "--config",
                 str(tmp_path / "old.json"), "--quiet"]) == 0
    again, first = (read_tiff(d / "stack.tif").data for d in (tmp_path / "again", out))
    np.testing.assert_array_equal(again, first)

    assert main(["denoise", str(source), "--out", str(out), "--resume", *FAST,
                 "--learning-rate", "0.02"]) == 0  # another setting: not the same result
    assert "1 written, 0 already complete" in capsys.readouterr().err
    assert _record(out / "stack.tif")["config"]["learning_rate"] == 0.02


def test_bad_settings_are_usage_errors(tmp_path, capsys):
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(1, 16, 16))
    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", str(source), "--out", str(tmp_path / "out"), "--learning-rate", "5"])
    assert exit_info.value.code == 2 and "out of range" in capsys.readouterr().err
    settings = tmp_path / "bad.json"
    settings.write_text(json.dumps({"learning_rat": 0.1}))
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), "--config",
                 str(settings)]) == 2
    assert "unknown option(s) ['learning_rat']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_all_offers_every_config_field_with_its_description(capsys):
    with pytest.raises(SystemExit):
        main(["denoise", "--help-all"])
    text = capsys.readouterr().out
    for field in describe_fields():
        assert f"--{field['name'].replace('_', '-')}" in text
    assert "number of optimisation steps" in text
    assert "10 to 30 % cheaper" in " ".join(text.split())  # a per cent sign survives argparse


def test_a_local_cluster_with_two_workers_processes_a_folder(tmp_path):
    distributed = pytest.importorskip("distributed")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        _write_stack(folder / f"s{i}.tif", seed=i, shape=(2, 16, 16))
    with _cluster(distributed, workers=2) as cluster:
        assert main(["denoise", str(folder), "--out", str(tmp_path / "out"), "--dask",
                     cluster.scheduler_address, *FAST]) == 0
        # a large stack can be split into tasks of a few slices, assembled by a last task
        assert main(["denoise", str(folder / "s0.tif"), "--out", str(tmp_path / "parts"),
                     *_one_slice_per_task(cluster), *FAST]) == 0
    for i in range(3):
        assert read_tiff(tmp_path / "out" / f"s{i}.tif").data.shape == (2, 16, 16)
        assert _record(tmp_path / "out" / f"s{i}.tif")["status"] == "complete"
    whole, parts = (read_tiff(tmp_path / d / "s0.tif") for d in ("out", "parts"))
    assert parts.data.dtype == np.uint16 and parts.axes == "ZYX"
    record = _record(tmp_path / "parts" / "s0.tif")
    assert record["timings"]["tasks"] == 2 and [s["index"] for s in record["slices"]] == [[0], [1]]
    # the first slice is fitted the same way in both modes, with the same intensity scaling
    np.testing.assert_array_equal(parts.data[0], whole.data[0])


def test_resume_redoes_an_input_that_was_replaced_since_its_output(tmp_path):
    source, out = tmp_path / "cell.tif", tmp_path / "out"
    _write_stack(source, seed=0, shape=(1, 16, 16))
    assert main(["denoise", str(source), "--out", str(out), *FAST]) == 0
    first = read_tiff(out / "cell.tif").data
    assert _record(out / "cell.tif")["source"]["size"] == source.stat().st_size

    # the same name, another acquisition: --resume must not keep the old result
    _write_stack(source, seed=1, shape=(2, 16, 16))
    assert main(["denoise", str(source), "--out", str(out), "--resume", *FAST]) == 0
    again = read_tiff(out / "cell.tif").data
    assert again.shape == (2, 16, 16) and first.shape == (16, 16)


def test_a_redo_that_fails_keeps_the_previous_output(tmp_path, monkeypatch):
    source, out = tmp_path / "stack.tif", tmp_path / "out"
    _write_stack(source, shape=(1, 16, 16))
    assert main(["denoise", str(source), "--out", str(out), *FAST]) == 0
    before = _digest(out / "stack.tif")

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(batch_run, "restore_array", broken)
    assert main(["denoise", str(source), "--out", str(out), "--overwrite", *FAST]) == 1
    assert _digest(out / "stack.tif") == before  # the earlier result is still there
    assert _record(out / "stack.tif")["status"] == "failed"  # ... but no longer counts as done


def test_problems_found_only_when_writing_are_refused_before_any_fit(tmp_path, capsys,
                                                                     monkeypatch):
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(2, 16, 16))
    fitted = []
    monkeypatch.setattr(batch_run, "restore_array", lambda *a, **k: fitted.append(1))

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["denoise", str(source), "--out", str(blocker / "out"), *FAST]) == 2
    assert "cannot write to --out" in capsys.readouterr().err

    assert main(["denoise", str(source), "--out", str(tmp_path / "result.tif"), *FAST]) == 2
    assert "looks like a file name" in capsys.readouterr().err
    assert not (tmp_path / "result.tif").exists()

    # an ImageJ hyperstack cannot be written back with axes out of TZCYXS order
    hyper = tmp_path / "tzyx.tif"
    tifffile.imwrite(hyper, np.zeros((2, 3, 16, 16), np.uint16), imagej=True,
                     metadata={"axes": "TZYX"})
    assert main(["denoise", str(hyper), "--axes", "ZTYX", "--out", str(tmp_path / "o"),
                 *FAST]) == 1
    assert "order TZCYXS" in capsys.readouterr().err
    assert fitted == []


def test_a_run_record_as_config_repeats_the_axes_too(tmp_path):
    source = tmp_path / "plain.tif"
    tifffile.imwrite(source, np.full((3, 16, 16), 100, np.uint16) +
                     np.arange(16, dtype=np.uint16), photometric="minisblack")
    assert main(["denoise", str(source), "--axes", "TYX", "--out", str(tmp_path / "a"),
                 *FAST]) == 0
    assert main(["denoise", str(source), "--out", str(tmp_path / "b"), "--quiet", "--config",
                 str(tmp_path / "a" / "plain.tif.json")]) == 0
    assert _record(tmp_path / "b" / "plain.tif")["axes"] == "TYX"
    assert read_tiff(tmp_path / "b" / "plain.tif").axes == "TYX"


def test_several_series_in_one_file_are_refused_rather_than_lost(tmp_path, capsys):
    source = tmp_path / "positions.ome.tif"
    with tifffile.TiffWriter(source, ome=True) as tif:
        for _ in range(3):
            tif.write(np.zeros((16, 16), np.uint16), metadata={"axes": "YX"})
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), *FAST]) == 1
    assert "holds 3 image series" in capsys.readouterr().err


def test_hidden_files_in_a_folder_are_not_inputs_and_compression_is_kept(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    data = _write_stack(folder / "cells.tif", shape=(1, 16, 16))
    (folder / "._cells.tif").write_bytes(b"macOS resource fork")
    tifffile.imwrite(folder / "packed.tif", data, compression="zlib")
    assert main(["denoise", str(folder), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells.tif", "cells.tif.json",
                                                     "packed.tif", "packed.tif.json"]
    with tifffile.TiffFile(out / "packed.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    with tifffile.TiffFile(out / "cells.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.NONE


def test_an_unreachable_scheduler_is_a_one_line_usage_error(tmp_path, capsys):
    pytest.importorskip("distributed")
    import dask

    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(1, 16, 16))
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["denoise", str(source), "--out", str(tmp_path / "out"), "--dask",
                     "tcp://127.0.0.1:1", *FAST]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in err
    assert "Traceback" not in err


def test_a_stack_in_dask_parts_accepts_what_the_whole_stack_accepts(tmp_path):
    distributed = pytest.importorskip("distributed")
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    data = np.random.default_rng(0).uniform(0.2, 0.8, (2, 16, 16)).astype(np.float32)
    data[:, 5:9, 5:9] = np.nan  # no data there, and the mask says so
    hole = np.zeros((16, 16), np.uint8)
    hole[4:10, 4:10] = 1
    tifffile.imwrite(images / "s.tif", data, photometric="minisblack", metadata={"axes": "ZYX"})
    tifffile.imwrite(masks / "s.tif", hole)
    with _cluster(distributed) as cluster:
        assert main(["inpaint", str(images), "--mask-dir", str(masks), "--out",
                     str(tmp_path / "parts"), *_one_slice_per_task(cluster), *FAST]) == 0
    result = read_tiff(tmp_path / "parts" / "s.tif").data
    assert result.shape == (2, 16, 16) and np.isfinite(result).all()


def test_a_device_name_no_machine_has_is_a_usage_error_even_for_dask_workers(tmp_path, capsys):
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(1, 16, 16))
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), "--dask", "local:1",
                 "--device", "gpu", *FAST]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_file_with_nan_gets_a_reason_a_command_line_user_can_act_on(tmp_path, capsys):
    source = tmp_path / "holes.tif"
    data = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    data[3, 3] = np.nan
    tifffile.imwrite(source, data)
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "1 NaN or infinite value(s)" in err and "inpaint them" in err
    assert "np." not in err and "task=" not in err


def test_quiet_silences_tifffile_warnings_about_an_odd_file(tmp_path, caplog, capsys):
    # an ImageJ stack whose slice-label metadata (IJMetadata tag) is damaged: the pixels read
    # fine, but tifffile logs a warning about the tag every time the file is opened
    source = tmp_path / "labelled.tif"
    data = np.random.default_rng(0).integers(900, 1100, (2, 16, 16)).astype(np.uint16)
    tifffile.imwrite(source, data, imagej=True,
                     metadata={"axes": "ZYX", "Labels": ["first", "second"]})
    raw = source.read_bytes()
    assert raw.count(b"JIJI") == 1  # the IJMetadata header (little-endian 'IJIJ')
    source.write_bytes(raw.replace(b"JIJI", b"XXXX"))

    def tifffile_messages():
        return [r.getMessage() for r in caplog.records if r.name.startswith("tifffile")]

    loud = [arg for arg in FAST if arg != "--quiet"]
    with caplog.at_level(logging.WARNING):
        assert main(["denoise", str(source), "--out", str(tmp_path / "loud"), *loud]) == 0
        assert any("imagej_metadata" in m for m in tifffile_messages())  # the file provokes one
        caplog.clear()
        capsys.readouterr()

        assert main(["denoise", str(source), "--out", str(tmp_path / "quiet"), *FAST]) == 0
    assert tifffile_messages() == []
    assert "tifffile" not in capsys.readouterr().err
    assert read_tiff(tmp_path / "quiet" / "labelled.tif").data.shape == (2, 16, 16)
    # only for that batch: a program calling main() gets tifffile's warnings back afterwards
    assert logging.getLogger("tifffile").level == logging.NOTSET


def test_a_dask_task_that_fails_leaves_a_failed_run_record(tmp_path, capsys):
    """A stack split into Dask parts whose first task (the check of the whole stack) fails
    on the worker: the file's record says it failed and why, instead of there being none."""
    distributed = pytest.importorskip("distributed")
    source, out = tmp_path / "holes.tif", tmp_path / "out"
    data = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    data[1, 3, 3] = np.nan  # refused by the check of the whole stack, which runs on a worker
    tifffile.imwrite(source, data, photometric="minisblack", metadata={"axes": "ZYX"})
    with _cluster(distributed) as cluster:
        assert main(["denoise", str(source), "--out", str(out), *_one_slice_per_task(cluster),
                     *FAST]) == 1
    assert "Dask task failed" in capsys.readouterr().err
    record = _record(out / "holes.tif")
    assert record["status"] == "failed"
    assert record["reason"].startswith("Dask task failed") and "NaN" in record["reason"]
    assert record["input"]["path"] == str(source)
    assert not (out / "holes.tif").exists()


BAYESIAN = ["--preset", "bayesian", "--max-iterations", "30", "--burn-in", "10",
            "--sample-every", "5", "--scales", "2", "--report-every", "30", "--quiet"]


def test_a_bayesian_batch_writes_the_uncertainty_map_with_the_pixel_size(tmp_path):
    source, out = tmp_path / "stack.tif", tmp_path / "out"
    _write_stack(source)
    assert main(["denoise", str(source), "--out", str(out), *BAYESIAN]) == 0
    uncertainty = read_tiff(out / "uncertainty" / "stack.tif")
    assert uncertainty.data.dtype == np.float32 and uncertainty.data.shape == (3, 16, 16)
    assert uncertainty.axes == "ZYX" and uncertainty.resolution == pytest.approx((10.0, 10.0))
    assert uncertainty.imagej["unit"] == "micron" and uncertainty.imagej["spacing"] == 0.5
    assert (uncertainty.data >= 0).all() and (uncertainty.data > 0).any(axis=(1, 2)).all()
    record = _record(out / "stack.tif")
    assert record["uncertainty"]["path"] == str(out / "uncertainty" / "stack.tif")

    (out / "uncertainty" / "stack.tif").unlink()  # an output without its map is not finished
    assert main(["denoise", str(source), "--out", str(out), "--resume", *BAYESIAN]) == 0
    assert (out / "uncertainty" / "stack.tif").is_file()

    # a redo without posterior samples takes the earlier map away with the earlier result
    assert main(["denoise", str(source), "--out", str(out), "--overwrite", *FAST]) == 0
    assert not (out / "uncertainty" / "stack.tif").exists()
    assert "uncertainty" not in _record(out / "stack.tif")


def test_an_rgb_image_gets_one_uncertainty_map(tmp_path):
    source, out = tmp_path / "rgb.tif", tmp_path / "out"
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    tifffile.imwrite(source, rgb, photometric="rgb", resolution=(4.0, 4.0))
    assert main(["denoise", str(source), "--out", str(out), *BAYESIAN]) == 0
    uncertainty = read_tiff(out / "uncertainty" / "rgb.tif")
    assert uncertainty.data.shape == (16, 16) and uncertainty.axes == "YX"
    assert uncertainty.resolution == pytest.approx((4.0, 4.0))


def test_a_stack_in_dask_parts_gets_the_uncertainty_of_every_part(tmp_path):
    distributed = pytest.importorskip("distributed")
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(2, 16, 16))
    with _cluster(distributed) as cluster:
        assert main(["denoise", str(source), "--out", str(tmp_path / "parts"),
                     *_one_slice_per_task(cluster), *BAYESIAN]) == 0
    assert main(["denoise", str(source), "--out", str(tmp_path / "whole"), *BAYESIAN]) == 0
    parts, whole = (read_tiff(tmp_path / d / "uncertainty" / "stack.tif").data
                    for d in ("parts", "whole"))
    assert parts.shape == (2, 16, 16)
    np.testing.assert_array_equal(parts[0], whole[0])  # slice 0 is fitted alike either way


def test_run_records_are_strict_json_even_when_a_stopping_rule_had_no_reading(tmp_path):
    source, out = tmp_path / "stack.tif", tmp_path / "out"
    _write_stack(source, shape=(1, 16, 16))
    # fewer steps than the stopping rule's warm-up: its value is still undefined (NaN)
    assert main(["denoise", str(source), "--out", str(out), "--preset", "fast",
                 "--max-iterations", "6", "--scales", "2", "--quiet"]) == 0

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    text = (out / "stack.tif.json").read_text()
    record = json.loads(text, parse_constant=refuse)
    assert "criterion" in record["slices"][0] and record["slices"][0]["criterion"] is None


def test_masks_saved_without_axes_work_per_slice_and_whole(tmp_path):
    source = tmp_path / "stack.tif"
    data = np.random.default_rng(0).integers(900, 1100, (2, 2, 16, 16)).astype(np.uint16)
    tifffile.imwrite(source, data, imagej=True, metadata={"axes": "TZYX"})
    per_slice = np.zeros((2, 2, 16, 16), np.uint8)  # as tifffile saves it: axes unknown (QQYX)
    per_slice[..., 4:8, 4:8] = 1
    tifffile.imwrite(tmp_path / "mask.tif", per_slice)
    assert main(["inpaint", str(source), "--mask", str(tmp_path / "mask.tif"), "--out",
                 str(tmp_path / "out"), *FAST]) == 0
    assert read_tiff(tmp_path / "out" / "stack.tif").data.shape == (2, 2, 16, 16)


def test_an_rgba_file_keeps_its_alpha(tmp_path):
    source, out = tmp_path / "rgba.tif", tmp_path / "out"
    rgba = np.random.default_rng(0).integers(0, 255, (16, 16, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(np.arange(16) < 8, 255, 40)[None, :]
    tifffile.imwrite(source, rgba, photometric="rgb")
    assert main(["super-resolve", str(source), "--factor", "2", "--out", str(out), *FAST]) == 0
    result = read_tiff(out / "rgba.tif")
    assert result.data.shape == (32, 32, 4) and result.alpha
    np.testing.assert_array_equal(result.data[..., 3], rgba[..., 3].repeat(2, 0).repeat(2, 1))
    assert not np.array_equal(result.data[::2, ::2, :3], rgba[..., :3])  # colours restored


def test_files_whose_samples_are_not_plain_greys_or_rgb_come_back_seen_as_they_were(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(20, 200, (16, 16), dtype=np.uint8)
    alpha = np.where(np.arange(16) < 8, 255, 40).astype(np.uint8)[None, :].repeat(16, 0)
    lut = np.stack([np.arange(256) * 257, np.zeros(256), np.arange(256)[::-1] * 257])
    files = {"inverted.tif": (grey.astype(np.uint16) * 100, {"photometric": "miniswhite"}),
             "lut.tif": (grey, {"imagej": True, "photometric": "palette",
                                "colormap": lut.astype(np.uint16)}),
             "samples.tif": (np.stack([grey] * 3, -1), {"photometric": "minisblack",
                                                        "planarconfig": "contig"}),
             "cmyk.tif": (np.stack([grey] * 4, -1), {"photometric": "separated"}),
             "grey_alpha.tif": (np.stack([grey, alpha], -1),
                                {"photometric": "minisblack", "planarconfig": "contig",
                                 "extrasamples": ["unassalpha"]})}
    (tmp_path / "in").mkdir()
    for name, (pixels, options) in files.items():
        tifffile.imwrite(tmp_path / "in" / name, pixels, **options)
    digests = {name: _digest(tmp_path / "in" / name) for name in files}
    assert main(["denoise", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *FAST]) == 0
    for name in files:
        assert _how_it_is_seen(tmp_path / "out" / name) == \
            _how_it_is_seen(tmp_path / "in" / name), name
        assert _digest(tmp_path / "in" / name) == digests[name]
    record = _record(tmp_path / "out" / "inverted.tif")
    assert record["input"]["photometric"] == record["output"]["photometric"] == "miniswhite"
    result = tifffile.imread(tmp_path / "out" / "grey_alpha.tif")
    np.testing.assert_array_equal(result[..., 1], alpha)  # kept, not restored
    assert not np.array_equal(result[..., 0], grey)


def _how_it_is_seen(path):
    """A file's axes, photometric interpretation, colour map, sample layout and page count."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return (tif.series[0].axes, page.photometric.name, int(page.planarconfig),
                [int(x) for x in page.extrasamples],
                None if page.colormap is None else page.colormap.tolist(), len(tif.pages),
                (tif.imagej_metadata or {}).get("hyperstack"))


def test_the_record_of_two_passes_says_which_pass_each_entry_is(tmp_path):
    source, out = tmp_path / "stack.tif", tmp_path / "out"
    _write_stack(source)
    assert main(["denoise", str(source), "--out", str(out), "--stack-passes", "2", *FAST]) == 0
    entries = [(s["index"], s["pass"]) for s in _record(out / "stack.tif")["slices"]]
    assert entries == [([0], 0), ([1], 0), ([2], 0), ([1], 1), ([0], 1)]


def test_a_record_repeats_the_cpu_threads_its_result_depends_on(tmp_path):
    import torch

    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(2, 32, 32))
    run = ["--preset", "quick", "--max-iterations", "6", "--scales", "3", "--quiet"]
    assert main(["denoise", str(source), "--out", str(tmp_path / "two"), "--threads", "2",
                 *run]) == 0
    assert torch.get_num_threads() == 1  # the process's own count is back afterwards
    record = _record(tmp_path / "two" / "stack.tif")
    assert record["threads"] == 2 and record["threads_used"] == 2
    assert main(["denoise", str(source), "--out", str(tmp_path / "one"), *run]) == 0
    assert _record(tmp_path / "one" / "stack.tif")["threads_used"] == 1

    record_file = tmp_path / "two" / "stack.tif.json"
    assert main(["denoise", str(source), "--out", str(tmp_path / "again"), "--config",
                 str(record_file), "--quiet"]) == 0
    again, two = (read_tiff(tmp_path / d / "stack.tif").data for d in ("again", "two"))
    np.testing.assert_array_equal(again, two)  # in this 1-thread process, with 2 threads


def test_a_record_of_an_auto_run_repeats_the_thread_count_that_was_measured(tmp_path,
                                                                          monkeypatch):
    import torch

    from napari_dip.engine import threads as fit_threads

    measured = []

    def one_is_faster(probe_step, candidates, **kwargs):
        measured.append(list(candidates))
        return 1

    monkeypatch.setattr(fit_threads, "fastest_thread_count", one_is_faster)
    torch.set_num_threads(2)  # so that "auto" has two counts to choose from
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(1, 16, 16))
    run = ["--preset", "quick", "--max-iterations", "100", "--report-every", "50", "--scales",
           "2", "--quiet"]
    assert main(["denoise", str(source), "--out", str(tmp_path / "auto"), *run]) == 0
    record = _record(tmp_path / "auto" / "stack.tif")
    assert measured == [[1, 2]] and record["threads"] == 1  # the measured count, pinned
    assert record["threads_used"] == 1 and record["slices"][0]["threads"] == 1
    assert main(["denoise", str(source), "--out", str(tmp_path / "again"), "--config",
                 str(tmp_path / "auto" / "stack.tif.json"), "--quiet"]) == 0
    assert len(measured) == 1  # the record's count, not measured again
    again, auto = (read_tiff(tmp_path / d / "stack.tif").data for d in ("again", "auto"))
    np.testing.assert_array_equal(again, auto)


def test_the_record_of_a_tiled_slice_says_how_each_tile_ended(tmp_path):
    rng = np.random.default_rng(0)
    clean = np.where(np.arange(48) > 24, 1800, 1000) * np.ones((48, 1))
    data = (clean + 100 * rng.standard_normal((48, 48))).astype(np.uint16)
    data[:, 24:] += (300 * rng.standard_normal((48, 24))).clip(0).astype(np.uint16)
    source = tmp_path / "halves.tif"  # the right tiles noisier than the left ones
    tifffile.imwrite(source, data, metadata={"axes": "YX"})
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), "--preset", "quick",
                 "--scales", "2", "--max-iterations", "60", "--report-every", "5",
                 "--tile-size", "32", "--tile-overlap", "8", "--stopping", "variance",
                 "--patience", "10", "--variance-window", "5", "--threads", "1",
                 "--quiet"]) == 0
    entry = _record(tmp_path / "out" / "halves.tif")["slices"][0]
    fits = entry["fits"]
    assert [(f["tile"], f["run"]) for f in fits] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert entry["iterations"] == fits[-1]["iterations"]  # the top level is the last tile's
    assert len({f["iterations"] for f in fits}) > 1  # which the other tiles did not all share
    assert any(f["stopped_early"] for f in fits)
    assert all(f["best_iteration"] <= f["iterations"] - 10 for f in fits if f["stopped_early"])


def test_a_record_repeats_the_device_it_asked_for(tmp_path, capsys):
    import json

    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(1, 16, 16))
    assert main(["denoise", str(source), "--out", str(tmp_path / "cpu"), "--device", "cpu",
                 *FAST]) == 0
    record_file = tmp_path / "cpu" / "stack.tif.json"
    assert main(["denoise", str(source), "--out", str(tmp_path / "again"), "--config",
                 str(record_file), "--quiet"]) == 0
    assert _record(tmp_path / "again" / "stack.tif")["device"] == "cpu"

    elsewhere = tmp_path / "gpu.json"  # a record made on a machine with more GPUs
    elsewhere.write_text(json.dumps({**_record(tmp_path / "cpu" / "stack.tif"),
                                     "device": "cuda:7"}))
    assert main(["denoise", str(source), "--out", str(tmp_path / "no"), "--config",
                 str(elsewhere), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "'cuda:7' was requested" in error and f"from --config {elsewhere}" in error
    assert "--device cpu" in error and not (tmp_path / "no" / "stack.tif").exists()
    assert main(["denoise", str(source), "--out", str(tmp_path / "here"), "--config",
                 str(elsewhere), "--device", "cpu", "--quiet"]) == 0


def test_a_record_of_a_stack_in_dask_parts_repeats_the_split(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    source = tmp_path / "stack.tif"
    _write_stack(source, shape=(2, 16, 16))
    with _cluster(distributed) as cluster:
        assert main(["denoise", str(source), "--out", str(tmp_path / "parts"),
                     *_one_slice_per_task(cluster), *FAST]) == 0
        record_file = tmp_path / "parts" / "stack.tif.json"
        assert _record(tmp_path / "parts" / "stack.tif")["slices_per_task"] == 1
        assert main(["denoise", str(source), "--out", str(tmp_path / "here"), "--config",
                     str(record_file), "--quiet"]) == 2
        assert f"--slices-per-task (from --config {record_file})" in capsys.readouterr().err
        assert main(["denoise", str(source), "--out", str(tmp_path / "again"), "--config",
                     str(record_file), "--dask", cluster.scheduler_address, "--quiet"]) == 0
    again, parts = (read_tiff(tmp_path / d / "stack.tif").data for d in ("again", "parts"))
    np.testing.assert_array_equal(again, parts)


def test_planning_a_thousand_files_is_quick_and_still_finds_a_hard_link(tmp_path):
    import os
    import time

    folder, out = tmp_path / "frames", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    inputs = [folder / f"t{i:04d}.tif" for i in range(1000)]
    for path in inputs:
        path.touch()
    start = time.perf_counter()
    jobs, failed = batch_jobs.plan_jobs(inputs, out, RunSpec(task="denoise"))
    assert len(jobs) == 1000 and not failed
    assert time.perf_counter() - start < 10  # it took 136 s when every pair was compared
    os.link(inputs[7], out / "t0007.tif")  # the output's name is the input itself
    with pytest.raises(batch_jobs.BatchError, match="would overwrite the input .*t0007.tif"):
        batch_jobs.plan_jobs(inputs, out, RunSpec(task="denoise"))


@pytest.mark.parametrize("setting, raised", [("65536", True), (None, False),
                                             (str(128 * 2 ** 20), False), ("abc", False)])
def test_a_dask_worker_s_tiny_malloc_trim_threshold_is_raised(monkeypatch, setting, raised):
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, under which a fit ran
    1.6 times slower (1024x1024, 16 tiles: 49.3 s against 30.0 s once raised;
    benchmarks/dask_allocator.py)."""
    calls = []

    class FakeLibc:
        def mallopt(self, option, value):
            calls.append((option, value))

    monkeypatch.setattr(batch_run.sys, "platform", "linux")
    monkeypatch.setattr(batch_run.ctypes, "CDLL", lambda name: FakeLibc())
    if setting is None:
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    else:
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", setting)
    batch_run.undo_tiny_malloc_trim()
    assert calls == ([(-3, 32 * 2 ** 20), (-1, 64 * 2 ** 20)] if raised else [])


def _part_from_the_whole_file(job, start, stop):
    """How a part task read its slices before it read only them: the whole image and mask."""
    _, layout, data, mask = batch_run.load_job(job)
    mask = batch_dask._flat_mask(mask)
    stack_shape = tuple(n for i, n in enumerate(data.shape) if i != layout.channel_axis)[:-2]
    return (batch_dask._flat_slices(data, layout.channel_axis)[start:stop],
            mask if mask is None or mask.ndim == 2 else mask[start:stop], stack_shape)


PART_LAYOUTS = {  # name: (shape, dtype, tifffile options, --axes, mask shape)
    "TZCYX, mask of the image's shape": ((2, 2, 2, 16, 16), np.uint16,
                                         {"imagej": True, "metadata": {"axes": "TZCYX"}},
                                         None, (2, 2, 2, 16, 16)),
    "RGBA stack, mask without the samples": ((3, 16, 16, 4), np.uint8,
                                             {"photometric": "rgb",
                                              "extrasamples": ["unassalpha"]},
                                             None, (3, 16, 16)),
    "--axes YZX, one mask plane": ((16, 3, 16), np.uint16, {"photometric": "minisblack"},
                                   "YZX", (16, 16)),
    "grey and alpha stack, one mask plane": ((3, 16, 16, 2), np.uint8,
                                             {"photometric": "minisblack",
                                              "planarconfig": "contig",
                                              "extrasamples": ["unassalpha"],
                                              "metadata": {"axes": "ZYXS"}}, None, (16, 16)),
}


@pytest.mark.parametrize("name", PART_LAYOUTS)
def test_a_part_that_reads_only_its_slices_restores_what_the_whole_file_gave(tmp_path, name,
                                                                            monkeypatch):
    distributed = pytest.importorskip("distributed")
    shape, dtype, options, axes, mask_shape = PART_LAYOUTS[name]
    rng = np.random.default_rng(0)
    source, mask = tmp_path / "stack.tif", tmp_path / "mask.tif"
    tifffile.imwrite(source, rng.integers(50, 200, shape).astype(dtype), **options)
    tifffile.imwrite(mask, (rng.random(mask_shape) < 0.2).astype(np.uint8),
                     photometric="minisblack")
    run = ["inpaint", str(source), "--mask", str(mask), "--slices-per-task", "2", *FAST,
           *(["--axes", axes] if axes else [])]
    with _cluster(distributed) as cluster:  # workers in this process see the monkeypatch
        assert main([*run, "--out", str(tmp_path / "slices"), "--dask",
                     cluster.scheduler_address]) == 0
        monkeypatch.setattr(batch_dask, "_load_part", _part_from_the_whole_file)
        assert main([*run, "--out", str(tmp_path / "whole"), "--dask",
                     cluster.scheduler_address]) == 0
    slices, whole = (read_tiff(tmp_path / d / "stack.tif", axes=axes) for d in ("slices", "whole"))
    assert slices.data.shape == shape and slices.alpha == ("alpha" in name or "RGBA" in name)
    np.testing.assert_array_equal(slices.data, whole.data)
    if slices.alpha:  # kept as it was, on one page
        np.testing.assert_array_equal(slices.data[..., -1], read_tiff(source).data[..., -1])
        with tifffile.TiffFile(tmp_path / "slices" / "stack.tif") as tif:
            assert len(tif.pages) == shape[0]
    records = [_record(tmp_path / d / "stack.tif") for d in ("slices", "whole")]
    assert records[0]["timings"]["tasks"] == 2
    assert [s["index"] for s in records[0]["slices"]] == [s["index"] for s in records[1]["slices"]]
    assert records[0]["input"] == records[1]["input"]


def _plane():
    return (1000 + 200 * np.random.default_rng(0).standard_normal((16, 16))).astype(np.uint16)


def test_a_linked_input_keeps_its_own_name_and_mask_and_a_broken_link_is_reported(
        tmp_path, capsys):
    store, images, masks = tmp_path / "store", tmp_path / "images", tmp_path / "masks"
    for folder in (store, images, masks):
        folder.mkdir()
    _write_stack(store / "acq_0001.tif", shape=(1, 16, 16))
    (images / "cell_07.tif").symlink_to(store / "acq_0001.tif")
    (images / "gone.tif").symlink_to(store / "deleted.tif")
    tifffile.imwrite(masks / "cell_07.tif", np.eye(16, dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["inpaint", str(images), "--mask-dir", str(masks), "--out", str(out),
                 *FAST]) == 1  # the broken link fails; the other is written
    assert sorted(p.name for p in out.iterdir()) == ["cell_07.tif", "cell_07.tif.json"]
    assert _record(out / "cell_07.tif")["mask"].endswith("cell_07.tif")
    assert "gone.tif: a link to a file that does not exist" in capsys.readouterr().err


def test_an_ome_tiff_finds_its_mask_without_the_ome_in_the_name(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(images / f"{name}.ome.tif", _plane(), ome=True,
                         metadata={"axes": "YX"})
    tifffile.imwrite(masks / "a_mask.tif", np.eye(16, dtype=np.uint8))
    tifffile.imwrite(masks / "b_mask.ome.tif", np.eye(16, dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["inpaint", str(images), "--mask-dir", str(masks), "--out", str(out),
                 *FAST]) == 0
    assert _record(out / "a.ome.tif")["mask"].endswith("a_mask.tif")
    assert _record(out / "b.ome.tif")["mask"].endswith("b_mask.ome.tif")


def test_damaged_and_undecodable_files_say_what_is_wrong_and_what_to_do(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _write_stack(folder / "whole.tif", shape=(2, 32, 32))
    data = (folder / "whole.tif").read_bytes()
    (folder / "cut.tif").write_bytes(data[:len(data) // 2])
    tifffile.imwrite(folder / "lzw.tif", np.ones((16, 16), np.uint16))
    with tifffile.TiffFile(folder / "lzw.tif", mode="r+b") as tif:  # marked LZW-compressed
        tif.pages[0].tags["Compression"].overwrite(5)
    (folder / "whole.tif").unlink()
    assert main(["denoise", str(folder), "--out", str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "cut.tif: not a readable TIFF image (the file is truncated or damaged" in err
    assert "lzw.tif: not a readable TIFF image (its compression (LZW) needs the imagecodecs " \
           "package: pip install imagecodecs" in err


def test_a_wrong_axes_hint_keeps_the_colour_samples(tmp_path, capsys):
    source = tmp_path / "rgb.tif"
    tifffile.imwrite(source, np.zeros((2, 32, 32, 3), np.uint8), photometric="rgb",
                     metadata={"axes": "CYXS"})
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), *FAST]) == 1
    assert "e.g. --axes ZYXS" in capsys.readouterr().err
    assert main(["denoise", str(source), "--out", str(tmp_path / "given"), "--axes", "ZYXS",
                 *FAST]) == 0


def test_an_imagej_unit_with_a_micro_sign_is_written_back(tmp_path):
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, _plane(), imagej=True, metadata={"unit": "xxm"})
    raw = source.read_bytes()
    source.write_bytes(raw.replace(b"unit=xxm", "unit=µm".encode()[:8]))  # as some tools save it
    assert read_tiff(source).imagej["unit"] == "µm"
    for task in (["denoise"], ["super-resolve", "--factor", "2"]):
        out = tmp_path / task[0]
        assert main([*task, str(source), "--out", str(out), *FAST]) == 0
        with tifffile.TiffFile(out / "in.tif") as tif:
            assert tif.imagej_metadata["unit"] == "\\u00B5m"  # ImageJ's own escape for µ


def test_a_result_that_could_not_be_written_is_refused_before_the_fit(tmp_path, monkeypatch,
                                                                     capsys):
    from napari_dip.io import metadata

    source = tmp_path / "in.tif"
    tifffile.imwrite(source, _plane(), imagej=True, metadata={"unit": "xxm"})
    source.write_bytes(source.read_bytes().replace(b"unit=xxm", "unit=µm".encode()[:8]))
    # as if the unit were written unescaped: tifffile refuses non-ASCII ImageJ text
    monkeypatch.setattr(metadata, "_imagej_description_safe", lambda settings: settings)

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(batch_run, "restore_array", no_fit)
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), *FAST]) == 1
    error = capsys.readouterr().err
    assert "in.tif: its result could not be written back with the file's metadata" in error
    assert "save the file as a plain TIFF" in error and "the fit ran" not in error


def test_a_record_repeats_what_auto_chose_and_gives_the_intensity_range(tmp_path):
    import json

    from napari_dip.cli import load_config_file

    source = tmp_path / "stack.tif"
    data = _write_stack(source, shape=(2, 16, 16))
    assert main(["denoise", str(source), "--out", str(tmp_path / "out"), *FAST]) == 0
    record = _record(tmp_path / "out" / "stack.tif")
    low, high = record["intensity_range_used"]
    assert low <= data.min() < data.max() <= high  # one range for the whole stack
    assert record["intensity_range"] is None  # as asked: each file's own, when repeated
    ran = {entry["memory_format"] for entry in record["slices"]}
    assert record["config"]["memory_format"] in ran and record["overrides"]["memory_format"]
    assert load_config_file(tmp_path / "out" / "stack.tif.json")["memory_format"] in ran
    record = _as_format_1(record)  # a record from before: "auto" is pinned when it is read
    assert record["config"]["memory_format"] == "auto"
    other = dict(record, slices=[dict(entry, memory_format="channels_last", precision="bfloat16")
                                 for entry in record["slices"]])
    (tmp_path / "other.json").write_text(json.dumps(other))  # as if from another machine
    options = load_config_file(tmp_path / "other.json")
    assert (options["memory_format"], options["precision"]) == ("channels_last", "bfloat16")
    mixed = dict(other, slices=[dict(other["slices"][0], precision="float32"),
                                other["slices"][1]])
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))  # slices disagree: left to auto
    assert load_config_file(tmp_path / "mixed.json")["precision"] == "auto"


def test_resume_knows_a_finished_file_by_any_of_its_names(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _write_stack(data / "x.tif", shape=(1, 16, 16))
    (tmp_path / "linked").symlink_to(data)
    (tmp_path / "sub").mkdir()
    out = tmp_path / "out"
    assert main(["denoise", str(data), "--out", str(out), *FAST]) == 0
    for name in (tmp_path / "linked", tmp_path / "sub" / ".." / "data" / "x.tif"):
        capsys.readouterr()
        assert main(["denoise", str(name), "--out", str(out), "--resume", *FAST]) == 0
        assert "0 written, 1 already complete" in capsys.readouterr().err


def test_a_stack_in_dask_parts_is_checked_whole_before_any_part_fits(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    source, masks = tmp_path / "stack.tif", tmp_path / "mask.tif"
    tifffile.imwrite(source, np.full((3, 64, 64), 100, np.uint16) +
                     np.arange(64, dtype=np.uint16), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    mask = np.zeros((3, 64, 64), np.uint8)
    mask[2, :40, :40] = 1  # the last slice leaves its first tile no known pixel
    tifffile.imwrite(masks, mask, photometric="minisblack", metadata={"axes": "ZYX"})
    with _cluster(distributed) as cluster:
        assert main(["inpaint", str(source), "--mask", str(masks), "--out",
                     str(tmp_path / "out"), *_one_slice_per_task(cluster), *FAST,
                     "--tile-size", "32", "--tile-overlap", "8", "--tile-above", "0"]) == 1
    assert "slice (2,): tile 1 of 9 (rows 0:32, columns 0:32) lies wholly in the mask" in \
        capsys.readouterr().err  # found by the task that checks the whole stack


@pytest.mark.filterwarnings("ignore:.*stored as RGB:DeprecationWarning")
def test_a_record_gives_the_photometric_interpretation_written(tmp_path):
    source = tmp_path / "three.tif"  # tifffile stores 3 planes without photometric as RGB
    tifffile.imwrite(source, np.full((3, 16, 16), 100, np.uint8) + np.arange(16, dtype=np.uint8))
    assert main(["denoise", str(source), "--axes", "ZYX", "--out", str(tmp_path / "out"),
                 *FAST]) == 0
    with tifffile.TiffFile(tmp_path / "out" / "three.tif") as tif:
        written = tif.pages[0].photometric.name.lower()
    assert written == "minisblack"  # three slices, not an RGB image
    assert _record(tmp_path / "out" / "three.tif")["output"]["photometric"] == written
