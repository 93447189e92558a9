"""The restoration engine: pure PyTorch and NumPy, no Qt, napari or front door."""
