"""Batch restoration of TIFF files: find inputs, plan safe outputs, resume, run here or on Dask.

Every input becomes a :class:`~.jobs.Job` (input, output, run record, mask). A job's output is a
TIFF of the same name in the output folder, written atomically; a run that draws posterior
samples (Bayesian DIP) also writes its uncertainty map, under the same name in the
``uncertainty`` subfolder; the run record (``<output name>.json``) is written last: an output
counts as finished only when its record exists and says ``"status": "complete"``.
:func:`~.run.run_batch` runs the jobs in this process or as tasks on a ``dask.distributed``
cluster; either way the worker that restores a file writes it.

- :mod:`.jobs`: find inputs and masks, plan outputs that overwrite nothing, resume fingerprints.
- :mod:`.run`: restore one file and write its output and run record; run a batch.
- :mod:`.dask`: one Dask task per file, or a large stack split into tasks of a few slices.
- :mod:`.progress`: progress bars and one line per finished file.
"""
