"""What a batch shows while it runs: bars for files, slices and a file's steps (its time left
from the plan's schedule), and one line per finished file."""

from __future__ import annotations

from .jobs import Outcome


class Progress:
    """Bars for files, slices and steps (tqdm, on stderr); silent when ``quiet``.

    Failures are always printed, one line each; finished and skipped files only when not quiet.
    """

    def __init__(self, n_files: int, *, quiet: bool = False) -> None:
        from tqdm.auto import tqdm

        self.quiet = quiet
        self._tqdm = tqdm
        self.files = tqdm(total=n_files, desc="files", unit="file", disable=quiet, position=0)
        self.slices = None
        self.steps = None

    def on_snapshot(self, stack_snapshot, steps: tuple[int, int]) -> None:
        """Move the slice bar to a :class:`~napari_dip.StackSnapshot`, and the step bar to
        ``steps`` (done, in all) of the file's plan
        (:meth:`~napari_dip.engine.plan.Plan.step_counter`): its total shrinks as stopping
        rules end fits early, so its time left is the file's, not the iteration cap's."""
        if self.quiet:
            return
        snap = stack_snapshot.snapshot
        done, total = steps
        if self.slices is None:
            self.slices = self._tqdm(total=stack_snapshot.n_slices, desc="slices", unit="slice",
                                     position=1, leave=False)
            self.steps = self._tqdm(total=total, desc="steps", unit="step", position=2,
                                    leave=False)
        self.steps.total = total
        self.steps.update(done - self.steps.n)
        postfix = {"loss": f"{snap.loss:.4g}"}
        if snap.n_tiles > 1:
            postfix["tile"] = f"{snap.tile + 1}/{snap.n_tiles}"
        self.steps.set_postfix(postfix, refresh=False)
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
        for bar in (self.steps, self.slices):
            if bar is not None:
                bar.close()
        self.steps = self.slices = None

    def close(self) -> None:
        self._close_inner()
        self.files.close()
