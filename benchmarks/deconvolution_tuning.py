"""Deconvolution settings tried on tuning images, never on the evaluation ones.

The same measure as ``benchmarks/deconvolution.py`` (blur, Poisson and read noise,
Richardson-Lucy at its oracle-best iteration count beside napari-dip ``deconvolve``), on
images that are not in ../shared/data: fluorescence-like scenes synthesised by
``benchmarks/train_init.py`` (blobs, filaments, membranes; ``scene<k>`` is drawn from seed k)
and two of scikit-image's bundled pictures, the Hubble deep field (point sources on a dark
background; its centre-left crop, greyscale) and ``cell`` (its centre). Each is a crop scaled
to [0, 1]. Settings under test go over the preset's with ``--set``::

    OMP_NUM_THREADS=1 python benchmarks/deconvolution_tuning.py --crop 64 --psfs gaussian1.5 \\
        --peaks 50 --set tv_weight=0.1 \\
        --out benchmarks/results/deconvolution/tuning.jsonl
"""

from __future__ import annotations

import argparse

import numpy as np

from deconvolution import common_arguments, run_rows

TUNING_IMAGES = ("scene1", "scene2", "scene3", "scene4", "hubble", "cell")


def tuning_image(name: str, crop: int) -> np.ndarray:
    """The tuning image ``name`` (see :data:`TUNING_IMAGES`), ``crop`` x ``crop``, float64
    scaled to [0, 1]."""
    from skimage import color, data

    if name.startswith("scene"):
        from train_init import synthetic_scene

        image = synthetic_scene(np.random.default_rng(int(name.removeprefix("scene"))), crop)
    else:
        image = color.rgb2gray(data.hubble_deep_field()) if name == "hubble" else data.cell()
        # the Hubble field's centre-left holds several bright galaxies; the cell its middle
        top, left = image.shape[0] // 2 - crop // 2, image.shape[1] // (3 if name == "hubble"
                                                                       else 2) - crop // 2
        image = image[top:top + crop, left:left + crop]
    image = np.asarray(image, np.float64)
    image = image - image.min()
    return image / image.max()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="+", default=list(TUNING_IMAGES),
                        choices=TUNING_IMAGES)
    common_arguments(parser)
    args = parser.parse_args()
    # each image's noise is drawn from its own seed, whichever images a run takes
    run_rows({name: (tuning_image(name, args.crop), 100 + TUNING_IMAGES.index(name))
              for name in args.images}, args)


if __name__ == "__main__":
    main()
