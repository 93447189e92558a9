"""What a batch shows while it runs: bars for files, slices and iterations, and one line per
finished file."""

from __future__ import annotations

from .jobs import Outcome


class Progress:
    """Bars for files, slices and iterations (tqdm, on stderr); silent when ``quiet``.

    Failures are always printed, one line each; finished and skipped files only when not quiet.
    """

    def __init__(self, n_files: int, *, quiet: bool = False) -> None:
        from tqdm.auto import tqdm

        self.quiet = quiet
        self._tqdm = tqdm
        self.files = tqdm(total=n_files, desc="files", unit="file", disable=quiet, position=0)
        self.slices = None
        self.iterations = None
        self._fit = None

    def on_snapshot(self, stack_snapshot) -> None:
        """Move the slice and iteration bars to a :class:`~napari_dip.StackSnapshot`."""
        if self.quiet:
            return
        snap = stack_snapshot.snapshot
        if self.slices is None:
            self.slices = self._tqdm(total=stack_snapshot.n_slices, desc="slices", unit="slice",
                                     position=1, leave=False)
        fit = (stack_snapshot.slice_number, snap.tile)  # one bar per slice, or per tile
        if self.iterations is None or self._fit != fit:
            if self.iterations is not None:
                self.iterations.close()
            desc = f"tile {snap.tile + 1}/{snap.n_tiles}" if snap.n_tiles > 1 else "iterations"
            self.iterations = self._tqdm(total=snap.max_iterations, desc=desc,
                                         unit="it", position=2, leave=False)
            self._fit = fit
        self.iterations.update(snap.iteration - self.iterations.n)
        self.iterations.set_postfix(loss=f"{snap.loss:.4g}", refresh=False)
        if snap.done:
            self.slices.update(len(stack_snapshot.group))

    def finished(self, outcome: Outcome) -> None:
        """Count a finished file and say what happened to it."""
        self._close_inner()
        self.files.update(1)
        if outcome.status == "failed":
            self.say(f"failed  {outcome.input}: {outcome.reason}", always=True)
        elif outcome.status == "written":
            self.say(f"wrote   {outcome.output} ({outcome.seconds:.1f} s)")
        else:
            self.say(f"skipped {outcome.input}: {outcome.reason}")

    def say(self, line: str, always: bool = False) -> None:
        import sys

        if always or not self.quiet:
            self._tqdm.write(line, file=sys.stderr)

    def _close_inner(self) -> None:
        for bar in (self.iterations, self.slices):
            if bar is not None:
                bar.close()
        self.iterations = self.slices = None

    def close(self) -> None:
        self._close_inner()
        self.files.close()
