"""stylenas.datasets: prepare_data, LMDBImages, rosinality compatibility, errors, loaders, demo data."""
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylenas.datasets import (DatasetError, ImageSource, InfiniteSampler, LMDBImages, LMDBWriter, TrainingLoader,
                               decode, decode_jpeg_batch, make_demo_data, prepare_data, to_rgb)
from stylenas.datasets import bench, demo
from stylenas.datasets import prepare as prepare_module
from stylenas.datasets.images import resize_center_crop
from stylenas.datasets.prepare import summary_lines
from stylenas.datasets.store import META_KEY, close_env, open_env, probe_sizes

ROOT = Path(__file__).resolve().parents[1]

# torchvision 0.29 deprecates its image decoders (for TorchCodec) and says so on every call
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def noise(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def hwc(tensor):
    return tensor.permute(1, 2, 0).numpy()


def records(path):
    """Every key -> value of an LMDB, our metadata key left out."""
    with open_env(path).begin() as txn:  # py-lmdb allows one environment per file and process
        return {bytes(k): bytes(v) for k, v in txn.cursor() if k != META_KEY}


def leftovers(folder):
    """Temporary or backup folders a writer may have left next to its output."""
    return [name for name in os.listdir(folder) if ".tmp-" in name or ".old-" in name]


def rosinality_lmdb(path, images_by_size, length=None):
    """An LMDB written the way rosinality's prepare_data.py writes one: JPEG quality 100 under
    f"{size}-{str(i).zfill(5)}", b"length", no metadata key."""
    env = lmdb.open(str(path), map_size=1 << 26, readahead=False)
    with env.begin(write=True) as txn:
        n = 0
        for size, images in images_by_size.items():
            for i, img in enumerate(images):
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="jpeg", quality=100)
                txn.put(f"{size}-{str(i).zfill(5)}".encode("utf-8"), buf.getvalue())
                n = max(n, i + 1)
        txn.put(b"length", str(n if length is None else length).encode("utf-8"))
    env.close()
    return path


# ---------------------------------------------------------------------------------------------
# prepare_data -> LMDBImages round trips


def test_png_round_trip_is_exact(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    square, tall, wide, big = noise(0, 16, 16), noise(1, 24, 16), noise(2, 16, 24), noise(3, 48, 32)
    Image.fromarray(square).save(src / "a.png")
    Image.fromarray(tall).save(src / "sub" / "b.png")
    Image.fromarray(wide).save(src / "c.bmp")
    Image.fromarray(big).save(src / "d.tif")
    summary = prepare_data(src, tmp_path / "out.lmdb", [16, 8], image_format="png", progress=False)
    assert summary["count"] == 4 and summary["sizes"] == [8, 16] and summary["skipped"] == []

    ds = LMDBImages(tmp_path / "out.lmdb")
    assert ds.resolution == 16 and len(ds) == 4 and ds.sizes == [8, 16]
    assert ds[0].dtype == torch.uint8 and ds[0].shape == (3, 16, 16)
    # sorted paths: a.png, c.bmp, d.tif, sub/b.png
    np.testing.assert_array_equal(hwc(ds[0]), square)
    np.testing.assert_array_equal(hwc(ds[1]), wide[:, 4:20])
    np.testing.assert_array_equal(hwc(ds[3]), tall[4:20])
    # resized: the same as rosinality's resize-whole-image then centre-crop, where that is exact
    np.testing.assert_array_equal(hwc(ds[2]), np.asarray(Image.fromarray(big).resize((16, 24), Image.LANCZOS))[4:20])
    small = LMDBImages(tmp_path / "out.lmdb", resolution=8)
    np.testing.assert_array_equal(hwc(small[0]), np.asarray(Image.fromarray(square).resize((8, 8), Image.LANCZOS)))
    assert ds[-1].equal(ds[3])

    meta = ds.meta
    assert meta["sizes"] == [8, 16] and meta["count"] == 4 and meta["format"] == "png"
    assert meta["filter"] == "lanczos" and meta["source"] == str(src) and meta["version"] == 1
    assert records(tmp_path / "out.lmdb")[b"length"] == b"4"


def test_jpeg_round_trip_within_tolerance(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    originals = [demo.render(5, i, 32) for i in range(6)]
    for i, img in enumerate(originals):
        Image.fromarray(img).save(src / f"{i}.png")
    prepare_data(src, tmp_path / "out.lmdb", [32], quality=95, progress=False)
    ds = LMDBImages(tmp_path / "out.lmdb")
    assert ds.meta["format"] == "jpeg" and ds.meta["quality"] == 95
    for i, img in enumerate(originals):
        stored = bytes(ds.encoded(i))
        assert stored[:3] == b"\xff\xd8\xff"
        pil = np.asarray(Image.open(io.BytesIO(stored))).astype(int)
        assert np.abs(hwc(ds[i]).astype(int) - pil).max() <= 1  # torchvision's decoder vs PIL's
        err = np.abs(hwc(ds[i]).astype(int) - img)  # JPEG q95 4:4:4 loses part of the grain only
        assert err.mean() < 4 and np.percentile(err, 99) < 16, (i, err.mean())


def test_resize_filters_differ_and_are_recorded(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    big = noise(7, 40, 40)
    Image.fromarray(big).save(src / "x.png")
    for name in ("box", "lanczos", "bicubic"):
        prepare_data(src, tmp_path / f"{name}.lmdb", [10], resize_filter=name, image_format="png", progress=False)
    box, lanczos = LMDBImages(tmp_path / "box.lmdb"), LMDBImages(tmp_path / "lanczos.lmdb")
    assert box.meta["filter"] == "box"
    # a 4x box filter is the mean of each 4x4 block
    blocks = big.reshape(10, 4, 10, 4, 3).mean(axis=(1, 3))
    assert np.abs(hwc(box[0]).astype(float) - blocks).max() <= 1  # PIL rounds between its two passes
    assert not box[0].equal(lanczos[0])
    up = prepare_data(src, tmp_path / "up.lmdb", [20, 64], workers=1, progress=False)
    assert up["upscaled"] == 1 and "upscaled 1 file whose short side is below 64 px" in summary_lines(up)


def test_workers_give_the_same_lmdb(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        Image.fromarray(noise(i, 20, 20 + i)).save(src / f"{i:02d}.png")
    (src / "junk.jpg").write_text("not a picture")
    one = prepare_data(src, tmp_path / "one.lmdb", [8, 16], workers=1, progress=False)
    two = prepare_data(src, tmp_path / "two.lmdb", [8, 16], workers=2, progress=False)
    assert one["count"] == two["count"] == 12 and [n for n, _ in two["skipped"]] == ["junk.jpg"]
    assert records(tmp_path / "one.lmdb") == records(tmp_path / "two.lmdb")


def _mode_images():
    """(file name, PIL image, expected RGB array) for every mode prepare_data must convert."""
    cases = []

    def add(name, mode, values, expected):  # 2x2: the two columns are the two values
        img = Image.new(mode, (2, 2))
        img.putdata(values * 2)
        cases.append((name, img, np.array([expected] * 2, dtype=np.uint8)))

    add("l.png", "L", [0, 100], [[0, 0, 0], [100, 100, 100]])
    add("la.png", "LA", [(100, 255), (100, 0)], [[100, 100, 100], [255, 255, 255]])
    add("rgba.png", "RGBA", [(10, 20, 30, 255), (10, 20, 30, 0)], [[10, 20, 30], [255, 255, 255]])
    add("cmyk.tif", "CMYK", [(0, 0, 0, 0), (255, 0, 0, 0)], [[255, 255, 255], [0, 255, 255]])
    add("i16.png", "I;16", [257 * 100, 65535], [[100, 100, 100], [255, 255, 255]])
    add("i32.tif", "I", [257 * 4, 65535], [[4, 4, 4], [255, 255, 255]])
    add("f.tif", "F", [0.5, 1.0], [[128, 128, 128], [255, 255, 255]])
    add("bilevel.png", "1", [0, 1], [[0, 0, 0], [255, 255, 255]])
    p = Image.new("P", (2, 2))
    p.putpalette([200, 10, 20, 5, 250, 60] + [0] * 762)
    p.putdata([0, 1] * 2)
    cases.append(("p.png", p, np.array([[[200, 10, 20], [5, 250, 60]]] * 2, dtype=np.uint8)))
    pt = p.copy()
    pt.info["transparency"] = 1
    cases.append(("p_transparent.png", pt, np.array([[[200, 10, 20], [255, 255, 255]]] * 2, dtype=np.uint8)))
    add("rgb.webp", "RGB", [(1, 2, 3), (250, 251, 252)], [[1, 2, 3], [250, 251, 252]])
    return cases


def test_every_pil_mode_converts_to_rgb(tmp_path):
    cases = _mode_images()
    for name, img, expected in cases:
        np.testing.assert_array_equal(np.asarray(to_rgb(img)), expected, err_msg=name)
    # premultiplied and palette-with-alpha modes exist only in memory
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.new("RGBa", (1, 1), (0, 0, 0, 0)))), [[[255, 255, 255]]])
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.new("La", (1, 1), (50, 255)))), [[[50, 50, 50]]])
    half = np.asarray(to_rgb(Image.new("RGBA", (1, 1), (200, 0, 0, 128)))).astype(int)
    assert np.abs(half - [[[227, 127, 127]]]).max() <= 1

    # and through files, stored as PNG at their own size: exact
    src = tmp_path / "src"
    src.mkdir()
    for name, img, _ in cases:
        img.save(src / name, **({"lossless": True} if name.endswith(".webp") else {}))
        assert Image.open(src / name).mode == img.mode, name  # the file really holds that mode
    summary = prepare_data(src, tmp_path / "modes.lmdb", [2], image_format="png", progress=False)
    assert summary["skipped"] == [] and summary["count"] == len(cases)
    ds = LMDBImages(tmp_path / "modes.lmdb")
    names = sorted(name for name, _, _ in cases)
    for name, _, expected in cases:
        np.testing.assert_array_equal(hwc(ds[names.index(name)]), expected, err_msg=name)


def test_exif_orientation_is_applied(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a = noise(3, 4, 4)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(src / "x.png", exif=exif)
    prepare_data(src, tmp_path / "o.lmdb", [4], image_format="png", progress=False)
    np.testing.assert_array_equal(hwc(LMDBImages(tmp_path / "o.lmdb")[0]), np.rot90(a, k=-1))


def test_unreadable_files_are_skipped_and_named(tmp_path):
    src = tmp_path / "src"
    (src / ".hidden").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(noise(i, 8, 8)).save(src / f"good{i}.png")
    buf = io.BytesIO()
    Image.fromarray(noise(9, 64, 64)).save(buf, "JPEG")
    (src / "truncated.jpg").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 3])
    (src / "text.jpg").write_text("this is not a JPEG")
    (src / "notes.txt").write_text("ignored: not an image extension")
    (src / ".hidden" / "x.png").write_bytes(b"")  # hidden: not even looked at
    summary = prepare_data(src, tmp_path / "out.lmdb", [8], progress=False)
    assert summary["count"] == 3 and summary["ignored"] == 2
    assert sorted(name for name, _ in summary["skipped"]) == ["text.jpg", "truncated.jpg"]
    reasons = dict(summary["skipped"])
    assert "not an image" in reasons["text.jpg"] and "runcated" in reasons["truncated.jpg"]
    text = "\n".join(summary_lines(summary))
    assert "skipped 2 files" in text and "truncated.jpg" in text and "text.jpg" in text
    assert len(LMDBImages(tmp_path / "out.lmdb")) == 3


def test_zip_source_equals_folder(tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(noise(i, 12, 10)).save(src / ("nested" if i % 2 else ".") / f"{i}.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as z:
        for f in sorted(src.rglob("*")):
            z.write(f, f.relative_to(src).as_posix())
        z.writestr("__MACOSX/._0.png", b"resource fork junk")
    a = prepare_data(src, tmp_path / "folder.lmdb", [8], workers=1, progress=False)
    b = prepare_data(tmp_path / "src.zip", tmp_path / "zip.lmdb", [8], workers=2, progress=False)
    assert a["count"] == b["count"] == 4 and [n for n, _ in b["skipped"]] == ["bad.png"]
    assert records(tmp_path / "folder.lmdb") == records(tmp_path / "zip.lmdb")
    assert LMDBImages(tmp_path / "zip.lmdb").meta["source"] == str(tmp_path / "src.zip")


# ---------------------------------------------------------------------------------------------
# files written by rosinality's tool


def test_reads_a_rosinality_lmdb(tmp_path):
    images = {size: [demo.render(2, i, size) for i in range(3)] for size in (4, 16, 128)}
    path = rosinality_lmdb(tmp_path / "ffhq.lmdb", images)
    ds = LMDBImages(path)
    assert ds.meta == {} and ds.sizes == [4, 16, 128] and ds.resolution == 128 and len(ds) == 3
    with open_env(path).begin() as txn:
        assert probe_sizes(txn) == [4, 16, 128]
        stored = bytes(txn.get(b"16-00002"))
    small = LMDBImages(path, resolution=16)
    pil = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB")).astype(int)
    assert np.abs(hwc(small[2]).astype(int) - pil).max() <= 1  # same JPEG, another decoder
    assert np.abs(hwc(ds[1]).astype(int) - images[128][1]).mean() < 5  # q100 but 4:2:0 chroma
    with pytest.raises(DatasetError, match=r"resolution 8 is not stored; it holds 4, 16, 128"):
        LMDBImages(path, resolution=8)

    # an LMDB kept as one file (subdir=False) reads too
    single = tmp_path / "single.mdb"
    with lmdb.open(str(single), subdir=False, map_size=1 << 24) as env, env.begin(write=True) as txn:
        with open_env(path).begin() as src:
            for key, value in src.cursor():
                txn.put(key, value)
    assert LMDBImages(single, 16)[2].equal(small[2])


def test_probe_sizes_finds_every_prefix(tmp_path):
    env = lmdb.open(str(tmp_path / "k.lmdb"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for size in (2, 25, 256, 1024):
            for i in (0, 1, 100000):
                txn.put(f"{size}-{str(i).zfill(5)}".encode(), b"x")
        txn.put(b"256-notanindex", b"x")
        txn.put(b"length", b"2")
        txn.put(b"33-00001", b"x")  # no image 0 at 33: not a stored size
        assert probe_sizes(txn) == [2, 25, 256, 1024]
    env.close()


# ---------------------------------------------------------------------------------------------
# errors, each naming the path


def test_reader_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.lmdb"
    with pytest.raises(DatasetError, match=f"{missing}: no such file or directory"):
        LMDBImages(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=f"{empty}: not an LMDB"):
        LMDBImages(empty)
    text = tmp_path / "text.lmdb"
    text.write_text("hello" * 1000)
    with pytest.raises(DatasetError, match=f"{text}: not an LMDB"):
        LMDBImages(text)
    garbage = tmp_path / "garbage.lmdb"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(os.urandom(8192))
    with pytest.raises(DatasetError, match=f"{garbage}: not an LMDB"):
        LMDBImages(garbage)

    nolength = tmp_path / "nolength.lmdb"
    with lmdb.open(str(nolength)) as env, env.begin(write=True) as txn:
        txn.put(b"8-00000", b"x")
    with pytest.raises(DatasetError, match=f"{nolength}: LMDB has no 'length' key"):
        LMDBImages(nolength)
    badlength = tmp_path / "badlength.lmdb"
    with lmdb.open(str(badlength)) as env, env.begin(write=True) as txn:
        txn.put(b"length", b"many")
    with pytest.raises(DatasetError, match=f"{badlength}: 'length' is b'many', expected an ascii integer"):
        LMDBImages(badlength)
    noimages = tmp_path / "noimages.lmdb"
    with lmdb.open(str(noimages)) as env, env.begin(write=True) as txn:
        txn.put(b"length", b"3")
    with pytest.raises(DatasetError, match=f"{noimages}: LMDB holds no images"):
        LMDBImages(noimages)


def test_corrupt_missing_and_misfit_records(tmp_path):
    path = rosinality_lmdb(tmp_path / "r.lmdb", {8: [noise(0, 8, 8), noise(1, 8, 8), noise(2, 8, 8)]}, length=5)
    with lmdb.open(str(path), map_size=1 << 26) as env, env.begin(write=True) as txn:
        txn.put(b"8-00001", b"\xff\xd8\xff garbage, not a JPEG")
        buf = io.BytesIO()
        Image.fromarray(noise(3, 4, 8)).save(buf, "PNG")
        txn.put(b"8-00003", buf.getvalue())
    ds = LMDBImages(path)
    assert ds[0].shape == (3, 8, 8) and ds[2].shape == (3, 8, 8)
    with pytest.raises(DatasetError, match=rf"{path}: record '8-00001' \(index 1\) is corrupt"):
        ds[1]
    with pytest.raises(DatasetError, match=rf"{path}: record '8-00003' \(index 3\) is 8x4, expected 8x8"):
        ds[3]
    with pytest.raises(DatasetError, match=rf"{path}: record '8-00004' \(index 4\) is missing"):
        ds[4]
    with pytest.raises(IndexError):
        ds[5]


def test_prepare_errors(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path / 'absent'}: no such file or directory"):
        prepare_data(tmp_path / "absent", tmp_path / "o.lmdb", [8], progress=False)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="file.txt: not a folder or a .zip"):
        prepare_data(tmp_path / "file.txt", tmp_path / "o.lmdb", [8], progress=False)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    (nothing / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=f"{nothing}: no image files found"):
        prepare_data(nothing, tmp_path / "o.lmdb", [8], progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_text("x")
    with pytest.raises(DatasetError, match=f"{broken}: no readable image among 1 file .*a.jpg"):
        prepare_data(broken, tmp_path / "o.lmdb", [8], progress=False)
    with pytest.raises(DatasetError, match="--size: expected positive integers, got 'big'"):
        prepare_data(broken, tmp_path / "o.lmdb", ["big"], progress=False)
    assert not (tmp_path / "o.lmdb").exists() and leftovers(tmp_path) == []


def test_existing_output_needs_force(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(noise(0, 8, 8)).save(src / "a.png")
    out = tmp_path / "out.lmdb"
    prepare_data(src, out, [8], image_format="png", progress=False)
    old = LMDBImages(out)[0]
    with pytest.raises(DatasetError, match=rf"{out}: already exists \(use --force to replace it\)"):
        prepare_data(src, out, [8], progress=False)
    Image.fromarray(noise(1, 8, 8)).save(src / "0.png")  # sorts first: index 0 changes
    prepare_data(src, out, [8], image_format="png", force=True, progress=False)
    new = LMDBImages(out)  # a fresh dataset sees the replaced file, not a cached environment
    assert len(new) == 2 and not new[0].equal(old) and new[1].equal(old)
    assert leftovers(tmp_path) == []

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(DatasetError, match=f"{precious}: exists and is not an LMDB folder"):
        prepare_data(src, precious, [8], force=True, progress=False)
    assert (precious / "thesis.tex").read_text() == "do not delete"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch, error):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        Image.fromarray(noise(i, 8, 8)).save(src / f"{i}.png")
    out = tmp_path / "out.lmdb"
    real, calls = prepare_module.process_image, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 4:
            raise error("injected")
        return real(*args)

    monkeypatch.setattr(prepare_module, "process_image", failing)
    with pytest.raises(error, match="injected"):
        prepare_data(src, out, [8], workers=1, progress=False)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["src"]

    # with --force an existing output survives a failed replacement untouched
    monkeypatch.setattr(prepare_module, "process_image", real)
    prepare_data(src, out, [8], workers=1, progress=False)
    before = records(out)
    calls.clear()
    monkeypatch.setattr(prepare_module, "process_image", failing)
    with pytest.raises(error):
        prepare_data(src, out, [8], workers=1, force=True, progress=False)
    assert records(out) == before and sorted(os.listdir(tmp_path)) == ["out.lmdb", "src"]


def test_failure_with_worker_processes_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        Image.fromarray(noise(i, 8, 8)).save(src / f"{i}.png")
    real = LMDBWriter.add

    def add(self, images):
        if self.count == 5:
            raise OSError("disk full (injected)")
        return real(self, images)

    monkeypatch.setattr(LMDBWriter, "add", add)
    with pytest.raises(OSError, match="injected"):
        prepare_data(src, tmp_path / "out.lmdb", [8], workers=2, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["src"]


# ---------------------------------------------------------------------------------------------
# command lines


def test_prepare_cli(tmp_path):
    prepare = load_script("prepare_data")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(noise(i, 10, 10)).save(src / f"{i}.png")
    (src / "text.jpg").write_text("nope")
    runner = CliRunner()
    result = runner.invoke(prepare.main, [str(src), "--out", str(tmp_path / "o.lmdb"), "--size", "4,8",
                                          "--format", "png", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 images at 4, 8 px" in result.output and "text.jpg: not an image" in result.output
    assert LMDBImages(tmp_path / "o.lmdb", 4)[0].shape == (3, 4, 4)

    result = runner.invoke(prepare.main, [str(src), "--out", str(tmp_path / "o.lmdb"), "--size", "8"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last == f"Error: {tmp_path / 'o.lmdb'}: already exists (use --force to replace it)"
    result = runner.invoke(prepare.main, [str(tmp_path / "missing"), "--out", str(tmp_path / "m.lmdb"), "--size", "8"])
    assert result.exit_code == 1 and f"Error: {tmp_path / 'missing'}: no such file or directory" in result.output
    result = runner.invoke(prepare.main, [str(src), "--out", str(tmp_path / "q.lmdb"), "--size", "8",
                                          "--quality", "101"])
    assert result.exit_code == 2 and "--quality" in result.output


def test_make_demo_data_command_line(tmp_path):
    out = tmp_path / "demo.lmdb"
    cmd = [sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), "--out", str(out), "--size", "16",
           "--size", "32", "--num", "40"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and "wrote 40 demo images at 16, 32 px" in run.stderr
    ds = LMDBImages(out)
    assert ds.sizes == [16, 32] and len(ds) == 40 and ds.meta["source"] == "demo (seed 0)"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and again.stderr.strip() == f"Error: {out}: already exists (use --force to replace it)"


# ---------------------------------------------------------------------------------------------
# demo data


def test_demo_data_is_deterministic_and_structured(tmp_path):
    make_demo_data(tmp_path / "a.lmdb", [16, 32], 24, seed=3, progress=False)
    make_demo_data(tmp_path / "b.lmdb", [16, 32], 24, seed=3, progress=False)
    make_demo_data(tmp_path / "prefix.lmdb", [16, 32], 8, seed=3, progress=False)
    make_demo_data(tmp_path / "other.lmdb", [16, 32], 8, seed=4, progress=False)
    a = records(tmp_path / "a.lmdb")
    assert a == records(tmp_path / "b.lmdb")
    prefix = records(tmp_path / "prefix.lmdb")
    assert all(a[k] == v for k, v in prefix.items() if k != b"length")
    assert prefix[b"32-00000"] != records(tmp_path / "other.lmdb")[b"32-00000"]

    ds = LMDBImages(tmp_path / "a.lmdb")
    x = torch.stack([ds[i] for i in range(len(ds))]).float()
    assert x.std(dim=(1, 2, 3)).min() > 15  # not flat
    assert (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean() > 3  # edges and texture
    assert torch.cdist(x.flatten(1), x.flatten(1)).add(torch.eye(len(x)) * 1e9).min() > 500  # all different
    assert x.mean(dim=(0, 2, 3)).sub(x.mean()).abs().max() < 40  # no colour cast across the set
    # the 16 px images are the 32 px ones resized (both stored as JPEG)
    small = LMDBImages(tmp_path / "a.lmdb", 16)
    for i in range(4):
        ref = np.asarray(resize_center_crop(Image.fromarray(demo.render(3, i, 32)), 16)).astype(int)
        assert np.abs(hwc(small[i]).astype(int) - ref).mean() < 5


# ---------------------------------------------------------------------------------------------
# loading


@pytest.fixture(scope="module")
def demo_lmdb(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.lmdb"
    make_demo_data(path, [8, 16], 20, progress=False)
    return path


def test_dataloader_with_worker_processes(demo_lmdb):
    ds = LMDBImages(demo_lmdb)
    serial = torch.stack([ds[i] for i in range(len(ds))])  # the main process has the file open now
    loader = torch.utils.data.DataLoader(ds, batch_size=6, num_workers=2)
    assert torch.cat(list(loader)).equal(serial)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[7].equal(serial[7]) and clone.resolution == 16


def test_dataloader_with_spawned_workers(demo_lmdb):
    ds = LMDBImages(demo_lmdb, resolution=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=10, num_workers=1, multiprocessing_context="spawn")
    assert torch.cat(list(loader)).equal(torch.stack([ds[i] for i in range(len(ds))]))


def test_several_datasets_share_one_file(demo_lmdb):
    big, small, again = LMDBImages(demo_lmdb), LMDBImages(demo_lmdb, 8), LMDBImages(str(demo_lmdb))
    assert big[3].shape == (3, 16, 16) and small[3].shape == (3, 8, 8) and again[3].equal(big[3])
    with pytest.raises(lmdb.Error, match="already open"):  # why the per-process cache exists
        lmdb.open(str(demo_lmdb), readonly=True, lock=False)


def test_transform(demo_lmdb):
    ds = LMDBImages(demo_lmdb, transform=lambda x: x.flip(2))
    assert ds[2].equal(LMDBImages(demo_lmdb)[2].flip(2))


def test_infinite_sampler_epochs_and_shards():
    data = list(range(5))
    it = iter(InfiniteSampler(data, seed=1))
    first = [next(it) for _ in range(15)]
    for k in range(3):
        assert sorted(first[5 * k:5 * k + 5]) == data
    assert first[:5] != first[5:10] or first[5:10] != first[10:15]  # reshuffled per pass
    shards = [iter(InfiniteSampler(data, seed=1, rank=r, num_replicas=2)) for r in range(2)]
    epoch = [[next(s) for _ in range(3)] for s in shards]  # 5 padded to 6, 3 per rank
    assert set(epoch[0]) | set(epoch[1]) == set(data)


def test_infinite_sampler_follows_torch_distributed(tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                                         world_size=1)
    try:
        sampler = InfiniteSampler(list(range(7)), seed=2)
        assert (sampler.rank, sampler.num_replicas) == (0, 1)
        it = iter(sampler)
        assert sorted(next(it) for _ in range(7)) == list(range(7))
    finally:
        torch.distributed.destroy_process_group()


def test_writer_commits_in_chunks_and_grows_its_map(tmp_path):
    with LMDBWriter(tmp_path / "w.lmdb", [4], commit_bytes=1000, map_size=64 << 10) as writer:
        blobs = [os.urandom(3000) for _ in range(60)]  # 180 kB through a 64 kB initial map
        for blob in blobs:
            writer.add({4: blob})
        writer.close({"source": "test"})
    stored = records(tmp_path / "w.lmdb")
    assert stored[b"length"] == b"60" and all(stored[f"4-{i:05d}".encode()] == b for i, b in enumerate(blobs))


@pytest.mark.parametrize("workers", [0, 2])
def test_training_loader(demo_lmdb, workers):
    ds = LMDBImages(demo_lmdb)
    as_float = torch.stack([ds[i] for i in range(len(ds))]).float() / 127.5 - 1
    loader = TrainingLoader(ds, batch_size=8, device="cpu", num_workers=workers, seed=0)
    flips = 0
    for _ in range(5):  # 40 images: crosses an epoch boundary
        batch = next(loader)
        assert batch.shape == (8, 3, 16, 16) and batch.dtype == torch.float32
        assert batch.min() >= -1 and batch.max() <= 1
        for img in batch:
            plain = (as_float - img).flatten(1).abs().amax(1).min() < 1e-6
            flipped = (as_float.flip(3) - img).flatten(1).abs().amax(1).min() < 1e-6
            assert plain or flipped
            flips += bool(flipped and not plain)
    assert 5 < flips < 35
    steady = TrainingLoader(ds, batch_size=4, num_workers=0, flip=False)
    batch = next(steady)
    assert all((as_float - img).flatten(1).abs().amax(1).min() < 1e-6 for img in batch)


def test_gpu_decode_is_guarded(demo_lmdb):
    ds = LMDBImages(demo_lmdb)
    with pytest.raises(DatasetError, match="gpu_decode needs a CUDA device"):
        TrainingLoader(ds, batch_size=4, device="cpu", gpu_decode=True)
    encoded = [ds.encoded(i) for i in range(4)]
    assert decode_jpeg_batch(encoded, "cpu").equal(torch.stack([ds[i] for i in range(4)]))
    if not torch.cuda.is_available():
        with pytest.raises(DatasetError, match="needs a CUDA GPU"):
            decode_jpeg_batch(encoded, "cuda")


@pytest.mark.cuda
def test_gpu_decode_matches_cpu(demo_lmdb):
    ds = LMDBImages(demo_lmdb)
    encoded = [ds.encoded(i) for i in range(8)]
    gpu = decode_jpeg_batch(encoded, "cuda")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.uint8 and gpu.shape == (8, 3, 16, 16)
    assert (gpu.cpu().int() - torch.stack([ds[i] for i in range(8)]).int()).abs().max() <= 3  # nvJPEG's IDCT
    loader = TrainingLoader(ds, batch_size=8, device="cuda", num_workers=0, gpu_decode=True)
    batch = next(loader)
    assert batch.device.type == "cuda" and batch.shape == (8, 3, 16, 16) and batch.abs().max() <= 1


def test_decode_png_and_errors():
    a = noise(0, 5, 7)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    out = decode(buf.getvalue())
    assert out.is_contiguous() and np.array_equal(hwc(out), a)
    gif = io.BytesIO()
    Image.fromarray(a).convert("P").save(gif, "GIF")  # PIL fallback for formats torchvision lacks
    assert decode(gif.getvalue()).shape == (3, 5, 7)
    with pytest.raises(ValueError):
        decode(b"junk")
    with pytest.raises(ValueError):
        decode(b"")


# ---------------------------------------------------------------------------------------------
# benchmark


def test_bench_smoke_and_readers_agree(tmp_path):
    path = tmp_path / "b.lmdb"
    make_demo_data(path, [16], 8, progress=False)
    ours = [LMDBImages(path)[i] for i in range(4)]
    close_env(path)  # the rosinality-style reader opens the file itself
    theirs = bench.RosinalityStyleDataset(path, 16)
    for i in range(4):
        ref = ours[i].float() / 127.5 - 1
        got = theirs[i]
        assert got.dtype == torch.float32
        assert min((got - ref).abs().max(), (got - ref.flip(2)).abs().max()) <= 2 / 127.5
    theirs.env.close()
    result = bench.run(size=16, num=32, batch=4, workers=(0,), repeats=1, prepare_num=4, prepare_workers=(1,),
                       threads=0, tmpdir=tmp_path, log=lambda line: None)
    json.dumps(result)
    row = result["read"][0]
    assert row["workers"] == 0 and row["rosinality_style"] > 0 and row["ours_uint8"] > 0 and row["speedup"] > 0
    assert result["prepare"][0]["images_per_s"] > 0 and result["config"]["mean_record_bytes"] > 0


# ---------------------------------------------------------------------------------------------
# killed workers and killed runs

class _CrashingSource(ImageSource):
    """Kills the process reading "17.png", as the out-of-memory killer or a decoder segfault would.
    A class, not a monkeypatched function: it reaches the workers pickled, under fork, spawn or
    forkserver alike."""

    def read(self, name):
        if name == "17.png":
            os._exit(9)
        return super().read(name)


def test_killed_worker_fails_the_run_instead_of_hanging(tmp_path, monkeypatch):
    import faulthandler
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        Image.fromarray(noise(i, 8, 8)).save(src / f"{i:02d}.png")
    monkeypatch.setattr(prepare_module, "ImageSource", _CrashingSource)
    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails the whole run, loudly
    try:
        with pytest.raises(DatasetError, match=r"a worker process ended abruptly after \d+ of 40 files were "
                                               r"prepared \(killed by the system.*nothing was written"):
            prepare_data(src, tmp_path / "out.lmdb", [8], workers=2, progress=False)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert sorted(os.listdir(tmp_path)) == ["src"]
    # through the command line: one Error line, exit code 1
    result = CliRunner().invoke(load_script("prepare_data").main,
                                [str(src), "--out", str(tmp_path / "out.lmdb"), "--size", "8", "--workers", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: a worker process ended abruptly")


@pytest.mark.slow
def test_temporary_folder_of_a_killed_run_is_removed_by_the_next(tmp_path):
    """A real SIGKILL of a prepare-data run in the middle of writing (slowed down so it is caught
    there), then a second run into the same output."""
    import signal
    import time
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        Image.fromarray(noise(i, 8, 8)).save(src / f"{i:02d}.png")
    out = tmp_path / "out.lmdb"
    slow_run = ("import sys, time\n"
                "from stylenas.datasets import prepare\n"
                "real = prepare.process_image\n"
                "def slow(*args):\n"
                "    time.sleep(0.2)\n"
                "    return real(*args)\n"
                "prepare.process_image = slow\n"
                f"prepare.prepare_data({str(src)!r}, {str(out)!r}, [8], workers=2, progress=False)\n")
    child = subprocess.Popen([sys.executable, "-c", slow_run], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(os.listdir(tmp_path)) < 3:  # src, the output's lock file, the child's folder
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
            time.sleep(0.05)
        time.sleep(0.5)  # some images written
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    killed = [n for n in os.listdir(tmp_path) if n.startswith(".out.lmdb.tmp-")]
    assert len(killed) == 1 and not out.exists() and (tmp_path / killed[0] / "data.mdb").is_file()

    result = CliRunner().invoke(load_script("prepare_data").main,
                                [str(src), "--out", str(out), "--size", "8", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert f"{out}: removed {killed[0]} (" in result.output and "killed before it finished" in result.output
    assert sorted(os.listdir(tmp_path)) == ["out.lmdb", "src"]
    assert len(LMDBImages(out)) == 30 and sorted(os.listdir(out)) == ["data.mdb", "lock.mdb"]


def test_leftover_without_a_writer_lock_is_reported_not_removed(tmp_path, capsys):
    old = tmp_path / ".out.lmdb.tmp-abc123"  # as a version without writer locks named it
    old.mkdir()
    (old / "data.mdb").write_bytes(b"\0" * 4096)
    with LMDBWriter(tmp_path / "out.lmdb", [8]) as writer:
        writer.add({8: b"x"})
        writer.close()
    assert "found .out.lmdb.tmp-abc123" in capsys.readouterr().err and old.is_dir()
