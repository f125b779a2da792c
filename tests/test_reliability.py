"""Reliability of the command layer (issue 19): file modes, errors, run locks, option checks,
resume files, signals, progress off a terminal, workers that die with their parent."""
import os
import stat

import pytest
import torch

from stylenas.io import atomic_path, current_umask, dump_json


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring it afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, mask, expected):
    from stylenas.train.checkpoint import save_checkpoint

    umask(mask)
    assert current_umask() == mask
    dump_json({"a": 1}, tmp_path / "genotype.json")
    save_checkpoint({"kind": "stylegan2", "G": {"w": torch.zeros(2)}}, tmp_path / "checkpoint.pt")
    with atomic_path(tmp_path / "sub" / "x.bin") as tmp:
        tmp.write_bytes(b"x")
    for name in ("genotype.json", "checkpoint.pt", "sub/x.bin"):
        assert mode(tmp_path / name) == expected, name
    assert mode(tmp_path / "sub") == expected | 0o111 & ~mask  # a new folder: rwx less the umask


def test_demo_lmdb_honours_the_umask(tmp_path, umask):
    from stylenas.datasets.demo import make_demo_data

    umask(0o022)
    make_demo_data(tmp_path / "d.lmdb", [8], 4)
    assert mode(tmp_path / "d.lmdb") == 0o755
    assert mode(tmp_path / "d.lmdb" / "data.mdb") == 0o644
