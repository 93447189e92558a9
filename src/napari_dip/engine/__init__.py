"""The Deep Image Prior engine: pure PyTorch and NumPy, no Qt, no napari, no front door.

A fit is a generator network ``f`` fitted to one observation ``y`` through a degradation
operator ``A`` under a likelihood, until a tracker says stop, in the shape of deepinv's
``DeepImagePrior(generator, physics)``::

    minimise  -log p(y | A(f(z)))  over the weights of f,  from a fixed random code z

Each part is an object with one job, in a module of its own:

- :mod:`.operators`: degradation operators ``A`` (identity, mask of known pixels, Lanczos
  downsampler), each an ``nn.Module`` with a plain function beside it. A new task is a new
  operator.
- :mod:`.likelihoods`: the data term ``-log p(y | A(x))`` (Gaussian, Poisson, Poisson-Gaussian).
- :mod:`.networks`: the generators ``f`` (hourglass with or without skips, Deep Decoder).
- :mod:`.stepper`: one optimisation step's machinery (precision, memory layout, compile, CUDA
  graph replay, float32 fall-back, the optimiser).
- :mod:`.trackers`: what watches the steps (moving average, posterior samples, backtracking,
  stopping rules), all fed through one ``update`` call.
- :mod:`.fit`: the fit loop that composes them, a generator of snapshots.
- :mod:`.measures`: total variation, PSNR and the noise estimate.
- :mod:`.device`: the compute device and the arithmetic it runs in.

Around the fit, the work a whole run does:

- :mod:`.plan`: ``plan(image, spec)`` checks a run once and fixes its schedule (slices, passes,
  tiles, seeded runs, step budgets); ``run(plan)`` yields its snapshots.
- :mod:`.plane`: one image plane: its tiles and seeded runs, pooled.
- :mod:`.stack`: a stack as a sequence of planes: warm start, two passes, slice batches.
- :mod:`.problem`, :mod:`.scaling`, :mod:`.tiling`, :mod:`.layout`: the observation a fit sees,
  intensities in and out of [0, 1], tiles and their blending, and the one axis model of arrays,
  TIFF files and napari layers.
- :mod:`.history`: a bounded history of a fit's estimates; :mod:`.run_history`: which of a
  plane's snapshots a run keeps in it, when asked (``config.history``).
- :mod:`.psf`, :mod:`.convolution`, :mod:`.noise_model`: point-spread functions, the blur
  operator, and the Poisson-Gaussian noise model estimated from one image.

Importing this package imports nothing heavy; its modules import torch.
"""
