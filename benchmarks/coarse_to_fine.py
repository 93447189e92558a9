"""Coarse to fine: fit auto's denoiser to the image binned 2x2 first, then continue at full size.

A step on the binned image costs a quarter of a full-size one. The full-size fit continues from
the coarse fit's weights, Adam state and input code (enlarged 2x by ``mode``: nearest or
bilinear), without the input-noise ramp; "equivalent" counts the coarse steps as quarter steps.
"base" is preset auto from scratch, with the Gaussian data term (auto's when this was run).
FMD confocal pairs (``peers.fmd_pairs``), centre crops, one thread, seed 0; prints one JSON
line per run.

    OMP_NUM_THREADS=1 python benchmarks/coarse_to_fine.py 128 fish,mice nearest,base
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import peers  # beside this script
from napari_dip.engine.fit import fit
from napari_dip.engine.measures import psnr
from napari_dip.engine.problem import observation_of
from napari_dip.engine.scaling import IntensityScaling
from napari_dip.presets import get_config


def last_step(observation, config, **continued):
    step = None
    for step in fit(observation, config, seed=0, device="cpu", **continued):
        pass
    return step


def main(crop: int, names: list[str], modes: list[str]) -> None:
    torch.set_num_threads(1)
    config = get_config("auto", "denoise", data_term="gaussian")  # as measured (docs/log.md)
    multiple = 2 ** config.scales
    for name, noisy, clean in peers.fmd_pairs(peers.FMD, crop, None, names):
        hwc = noisy[..., None].astype(np.float32)
        scaling = IntensityScaling.from_image(hwc, None)

        def observed(image):
            return observation_of(image, None, factor=None, guide=None,
                                  size_multiple=multiple, scaling=scaling)[0]

        def result(step):
            estimate = step.estimate[0, 0, :crop, :crop].float().numpy()
            return estimate * (scaling.high - scaling.low) + scaling.low

        for mode in modes:
            start = time.process_time()
            if mode == "base":
                step = last_step(observed(hwc), config)
                record = dict(iterations=step.iteration, equivalent=step.iteration)
            else:
                binned = hwc.reshape(crop // 2, 2, crop // 2, 2, 1).mean(axis=(1, 3))
                coarse = last_step(observed(binned), config)
                code = F.interpolate(coarse.code, scale_factor=2, mode=mode)
                step = last_step(observed(hwc), config.replace(reg_noise_ramp=0),
                                 network=coarse.network, code=code,
                                 optimizer_state=coarse.optimizer.state_dict())
                record = dict(coarse=coarse.iteration, iterations=step.iteration,
                              equivalent=coarse.iteration / 4 + step.iteration)
            record.update(mode=mode, image=name, psnr=psnr(result(step), clean),
                          cpu=time.process_time() - start)
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3].split(","))
