"""Files in and out: TIFF with its metadata, masks, JSON run records, all written atomically.

- :mod:`.tiff`: :func:`~.tiff.read_tiff` returns a :class:`~.tiff.TiffImage` (the pixels, their
  axes in tifffile's letters, e.g. ``"ZYX"``, ``"TZCYX"``, ``"YXS"``, and the metadata worth
  keeping); :func:`~.tiff.write_tiff` writes a restored image back in the same flavour
  (ImageJ, OME-TIFF or plain); a stack's slices are read page by page.
- :mod:`.metadata`: the ImageJ, OME and plain-TIFF metadata and photometric interpretation
  read from a file and written back with its result.
- :mod:`.records`: atomic writes and the JSON run records.

A file's axis letters map onto the engine's through
:meth:`napari_dip.engine.layout.ImageAxes.from_letters`.
"""
