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

Importing this package imports nothing heavy; its modules import torch.
"""
