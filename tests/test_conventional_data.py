"""CIFAR-10 python batches and STL-10 binaries -> LMDB (`prepare-data --from cifar10|stl10`)."""
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from stylenas.datasets import DatasetError, LMDBImages, prepare_data
from stylenas.datasets.cifar import ArrayImageSource, read_cifar10_batch, read_stl10_binary
from stylenas.datasets.commands import prepare_data_command

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")


def write_cifar(folder, per_batch=3, seed=0):
    """Five tiny batches in CIFAR-10's format; returns the images [N, 32, 32, 3] in order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    images = []
    for i in range(1, 6):
        hwc = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        images.append(hwc)
        data = hwc.transpose(0, 3, 1, 2).reshape(per_batch, 3072)  # R plane, G plane, B plane
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"batch_label": b"x", b"labels": [0] * per_batch, b"data": data}, f, protocol=2)
    (folder / "test_batch").write_bytes(b"not read")
    return np.concatenate(images)


def write_stl(folder, counts=(("unlabeled_X.bin", 2), ("train_X.bin", 1)), seed=1):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    images = []
    for name, n in counts:
        hwc = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        images.append(hwc)
        hwc.transpose(0, 3, 2, 1).tofile(folder / name)  # planes stored column-major
    return np.concatenate(images)


def test_cifar_batch_pixels_and_order(tmp_path):
    images = write_cifar(tmp_path / "cifar-10-batches-py")
    np.testing.assert_array_equal(read_cifar10_batch(tmp_path / "cifar-10-batches-py" / "data_batch_2"), images[3:6])
    source = ArrayImageSource("cifar10", tmp_path)  # the parent folder works too
    assert len(source) == 15
    np.testing.assert_array_equal(np.stack([source.image(n) for n in source.names]), images)


def test_stl_binary_orientation(tmp_path):
    images = write_stl(tmp_path / "stl10_binary")
    np.testing.assert_array_equal(read_stl10_binary(tmp_path / "stl10_binary" / "train_X.bin"), images[2:])
    source = ArrayImageSource("stl10", tmp_path / "stl10_binary")
    assert [n.split("/")[0] for n in source.names] == ["unlabeled_X.bin"] * 2 + ["train_X.bin"]


def test_prepare_cifar_is_lossless_png(tmp_path):
    images = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=2)
    summary = prepare_data(tmp_path / "cifar-10-batches-py", tmp_path / "c.lmdb", [32], image_format="png",
                           workers=1, progress=False, source_format="cifar10")
    assert summary["count"] == 10 and not summary["skipped"]
    data = LMDBImages(tmp_path / "c.lmdb")
    np.testing.assert_array_equal(np.stack([data[i].permute(1, 2, 0).numpy() for i in range(10)]), images)


def test_prepare_stl_resized_to_48_by_cli(tmp_path):
    images = write_stl(tmp_path / "stl10_binary")
    result = CliRunner().invoke(prepare_data_command, [str(tmp_path / "stl10_binary"), "--out", str(tmp_path / "s.lmdb"),
                                                       "--size", "48", "--from", "stl10", "--format", "png",
                                                       "--workers", "2"])
    assert result.exit_code == 0, result.output
    data = LMDBImages(tmp_path / "s.lmdb")
    assert len(data) == 3 and data[0].shape == (3, 48, 48)
    # a 2x down-sampling of noise: each pixel close to the mean of its 2x2 block
    block_mean = images[0].reshape(48, 2, 48, 2, 3).mean(axis=(1, 3))
    assert np.abs(data[0].permute(1, 2, 0).numpy() - block_mean).mean() < 40


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        ArrayImageSource("cifar10", tmp_path)
    write_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="missing data_batch_3"):
        ArrayImageSource("cifar10", tmp_path)
    evil = tmp_path / "evil"
    evil.mkdir()
    for i in range(1, 6):
        with open(evil / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": print}, f)  # a pickle that would import a callable
    with pytest.raises(DatasetError, match="data_batch_1: not a CIFAR-10 python batch"):
        ArrayImageSource("cifar10", evil)
    (tmp_path / "stl10_binary").mkdir()
    (tmp_path / "stl10_binary" / "train_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(DatasetError, match="train_X.bin: 1000 bytes"):
        ArrayImageSource("stl10", tmp_path)
    result = CliRunner().invoke(prepare_data_command, [str(evil), "--out", str(tmp_path / "x.lmdb"), "--size", "32",
                                                       "--from", "cifar10"])
    assert result.exit_code != 0 and "Error:" in result.output and not (tmp_path / "x.lmdb").exists()
