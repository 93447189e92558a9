"""Atomic writes: a failed write leaves the old file and no temporary behind."""

import os
import stat

import pytest

from napari_dip.io.records import atomic_write, leftover_temporaries


def test_atomic_write_keeps_the_old_file_on_failure_and_uses_normal_permissions(tmp_path):
    target = tmp_path / "out.tif"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"first"))

    def crash(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert target.read_bytes() == b"first"
    assert leftover_temporaries(target) == []
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
