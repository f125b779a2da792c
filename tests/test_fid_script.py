"""scripts/fid.py end to end: folders, LMDB and .npz inputs, --num / --num-ref, --resolution,
--recursive, --save-stats, --is, --kid, --json, errors.

Random Inception weights in pytorch-fid's layout stand in for the real file (see
test_metrics_inception). With fewer images than 2048 dimensions the exact oracle for the
FID is the n1 x n2 cross-product formula of test_metrics.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylenas import datasets
from stylenas.datasets.images import load_image
from stylenas.metrics import (ImageFolder, InceptionV3FID, StatsFileError, check_stats_path, extract_features,
                              inception_score, list_images, load_stats, save_stats, stats_count)
from stylenas.metrics.cli import PROTOCOL, format_text
from test_metrics import exact_fid, kid_oracle
from helpers import write_weights

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fid.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("fid_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fid_script = _load_script()


def _images(root, n, seed, sizes=((16, 16),), nested=False):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        h, w = sizes[k % len(sizes)]
        sub = root / "deeper" if nested and k % 3 == 0 else root
        sub.mkdir(exist_ok=True)
        base = rng.integers(0, 256, (1, 1, 3)) * 0.5 + rng.integers(0, 128, (h, w, 3))
        Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(sub / f"{seed}_{k:03d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    return {
        "weights": write_weights(root / "weights"),
        "a": _images(root / "a", 12, seed=1, sizes=((16, 16), (20, 24)), nested=True),
        "b": _images(root / "b", 6, seed=2),
        "root": root,
    }


@pytest.fixture(scope="module")
def features(data):
    """Per-folder (features, unbiased logits) computed without the script (A with its subfolder)."""
    net = InceptionV3FID(weights=data["weights"])
    out = {}
    for name in ("a", "b"):
        folder = ImageFolder(data[name], recursive=True)
        _, feats, logits = extract_features(net, folder, batch_size=1, keep_features=True, keep_logits=True)
        out[name] = (feats.double().numpy(), logits)
    return out


def run(args, env=None):
    result = CliRunner().invoke(fid_script.main, [str(a) for a in args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_two_folders_with_is_kid_and_aliases(data, features):
    result = run([data["a"], data["b"], "--recursive", "--inception", data["weights"], "--num-workers", 0,
                  "--batch-size", 5, "--is", "--kid"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[:3] == [f"A: {data['a']} (folder, 12 images, mixed sizes: 16x16 (6), 24x20 (6))",
                         f"B: {data['b']} (folder, 6 images, 16x16)", "Device: cpu"]
    assert lines[3].startswith("Protocol: pytorch-fid's")
    assert [line.split(":")[0] for line in lines[-3:]] == ["IS", "KID", "FID"]  # FID last
    assert "A: Inception features" in result.stderr  # the progress bar goes to stderr
    value = float(lines[-1].split()[1])
    assert value == pytest.approx(exact_fid(features["a"][0], features["b"][0]), rel=1e-6)
    mean, std = inception_score(features["a"][1], splits=10)
    assert lines[-3].startswith(f"IS: {mean:.6g} ± {std:.6g}")
    # KID against plain numpy on the same 100 subsets (of min(1000, 12, 6) = 6 images)
    kid, kid_std = kid_oracle(features["a"][0], features["b"][0], num_subsets=100, subset_size=1000, seed=0)
    got = re.fullmatch(r"KID: (\S+) ± (\S+) \(100 subsets of 6\)", lines[-2])
    assert kid_std > 0 and float(got[1]) == pytest.approx(kid, rel=1e-5)
    assert float(got[2]) == pytest.approx(kid_std, rel=1e-4)


def test_folders_are_read_like_pytorch_fid(data, tmp_path):
    """Top level only unless --recursive, pytorch-fid's extensions in any case, hidden files skipped."""
    root = _images(tmp_path / "f", 4, seed=3)
    (root / "sub").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "sub" / "deep.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "UPPER.JPEG")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "other.gif")  # prepare-data reads it; pytorch-fid not
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "._resource.png")
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / ".hidden" / "x.png")
    top = [p.name for p in list_images(root)]
    assert top == ["3_000.png", "3_001.png", "3_002.png", "3_003.png", "UPPER.JPEG"]
    assert [p.relative_to(root).as_posix() for p in list_images(root, recursive=True)] == \
        ["3_000.png", "3_001.png", "3_002.png", "3_003.png", "UPPER.JPEG", "sub/deep.png"]
    assert len(ImageFolder(root)) == 5 and len(ImageFolder(root, recursive=True)) == 6
    only_deep = tmp_path / "nested_only"
    _images(only_deep / "x", 3, seed=4)
    result = run([only_deep, data["b"], "--inception", data["weights"]])
    assert result.exit_code == 1 and "no images (.bmp, .jpg" in result.stderr
    assert "directly inside it, 3 in its subfolders: add --recursive" in result.stderr


def test_same_folder_same_pixels_in_fid_and_prepare_data(data, tmp_path):
    """The one decoder: alpha on white, 16-bit grey rescaled, palette transparency, EXIF rotation."""
    rng = np.random.default_rng(7)
    src = tmp_path / "odd"
    src.mkdir()
    rgba = np.concatenate([rng.integers(0, 256, (12, 12, 3)), rng.integers(0, 256, (12, 12, 1))], 2).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(src / "a_rgba.png")
    Image.fromarray(rgba[..., [0, 3]], "LA").save(src / "b_la.png")
    Image.fromarray((rng.integers(0, 65536, (12, 12))).astype(np.uint16)).save(src / "c_grey16.png")
    palette = Image.fromarray(rng.integers(0, 4, (12, 12)).astype(np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    palette.save(src / "d_palette.png", transparency=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src / "e_rotated.png", exif=exif)
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), "L").save(src / "f_grey.webp", lossless=True)
    folder = ImageFolder(src)
    assert [p.name for p in folder.files] == sorted(os.listdir(src))
    out = tmp_path / "odd.lmdb"
    datasets.prepare_data(src, out, [12], image_format="png", workers=1, progress=False)  # no resampling at 12 px
    stored = datasets.LMDBImages(out)
    assert len(stored) == len(folder) == 6
    for k, path in enumerate(folder.files):
        pixels = folder[k]
        assert torch.equal(pixels, stored[k]), path.name
        assert torch.equal(pixels, torch.from_numpy(np.array(load_image(path.read_bytes()))).permute(2, 0, 1))
    white = rgba[..., 3:] / 255
    expected = np.rint(rgba[..., :3] * white + 255 * (1 - white))  # alpha on white, not dropped
    assert np.abs(folder[0].permute(1, 2, 0).numpy() - expected).max() <= 1
    rotated = np.asarray(Image.open(src / "e_rotated.png"))
    assert torch.equal(folder[4].permute(1, 2, 0), torch.from_numpy(np.rot90(rotated, -1).copy()))


def test_num_limits_a_only_and_num_ref_limits_b(data, features):
    b, feats = data["b"], features["b"][0]
    common = [b, b, "--inception", data["weights"], "--workers", 0]
    result = run(common + ["--num", 2, "--num-ref", 50, "--json"])
    report = json.loads(result.stdout)
    assert (report["inputs"]["A"]["images"], report["inputs"]["A"]["available"]) == (2, 6)
    assert (report["inputs"]["B"]["images"], report["inputs"]["B"]["available"]) == (6, 6)  # all of B
    assert report["fid"] == pytest.approx(exact_fid(feats[:2], feats), rel=1e-6)
    warning = f"Warning: B: {b} has 6 images, fewer than --num-ref 50; using all of them"
    assert warning in result.stderr and report["warnings"] == [warning]
    lines = run(common + ["--num", 3, "--num-ref", 2]).stdout.splitlines()
    assert lines[:2] == [f"A: {b} (folder, first 3 of 6 images, 16x16)", f"B: {b} (folder, first 2 of 6 images, 16x16)"]
    assert float(lines[-1].split()[1]) == pytest.approx(exact_fid(feats[:3], feats[:2]), rel=1e-6)


def test_json_save_stats_and_npz_inputs(data, features, tmp_path):
    ref = tmp_path / "a.npz"  # A's statistics, computed without the script
    fa, fb = features["a"][0], features["b"][0]
    save_stats(ref, fa.mean(0), np.cov(fa, rowvar=False), n=12)
    out = tmp_path / "stats" / "deeper" / "b.npz"  # folders created on save
    result = run([data["b"], ref, "--save-stats", out, "--inception", data["weights"], "--workers", 0, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # one JSON object, nothing else on stdout
    assert report["fid"] == pytest.approx(exact_fid(fb, fa), rel=1e-6)
    assert report["inputs"] == {
        "A": {"path": str(data["b"]), "kind": "folder", "images": 6, "available": 6, "resolution": "16x16",
              "image_sizes": {"16x16": 6}},
        "B": {"path": str(ref), "kind": "npz", "images": 12}}
    assert report["saved_stats"] == str(out) and report["device"] == "cpu"
    assert "kid" not in report and "is" not in report and "warnings" not in report

    assert sorted(p.name for p in out.parent.iterdir()) == ["b.npz"]
    mu, sigma = load_stats(out)
    np.testing.assert_allclose(mu, fb.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(fb, rowvar=False), rtol=1e-5, atol=1e-6)
    assert stats_count(out) == 6
    # Two statistics files need no network at all: no --inception, and no weights anywhere.
    theirs = tmp_path / "theirs.npz"  # pytorch-fid's files do not record the count
    np.savez(theirs, mu=fa.mean(0), sigma=np.cov(fa, rowvar=False))
    both = run([out, theirs], env={"TORCH_HOME": str(tmp_path / "empty"), "STYLENAS_INCEPTION": None})
    assert both.exit_code == 0, both.output
    lines = both.stdout.strip().splitlines()
    assert lines[:3] == [f"A: {out} (npz, statistics of 6 images)", f"B: {theirs} (npz, image count not recorded)",
                         f"Protocol: {PROTOCOL}"]  # no device line: no network ran
    assert float(lines[-1].split()[1]) == pytest.approx(report["fid"], rel=1e-9)


def test_save_stats_of_a_alone_with_num(data, features, tmp_path):
    out = tmp_path / "b4.npz"
    result = run([data["b"], "--num", 4, "--save-stats", out, "--inception", data["weights"], "--workers", 0])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"A: {data['b']} (folder, first 4 of 6 images, 16x16)"
    assert result.stdout.strip().splitlines()[-1] == f"Saved statistics of A to {out}"
    mu, sigma = load_stats(out)  # the first 4 images in path order
    np.testing.assert_allclose(mu, features["b"][0][:4].mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(features["b"][0][:4], rowvar=False), rtol=1e-5, atol=1e-6)
    assert stats_count(out) == 4


def test_save_stats_path_is_checked_before_the_work(data, tmp_path, monkeypatch):
    from stylenas.metrics import cli, stats

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted before the --save-stats path was checked")

    monkeypatch.setattr(cli, "extract_features", no_extraction)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    result = run([data["b"], data["b"], "--save-stats", tmp_path / "a_file" / "s.npz", "--inception", data["weights"]])
    parent = tmp_path / "a_file"
    assert result.exit_code == 1 and f"Error: --save-stats: {parent / 's.npz'}: cannot create its folder " \
        f"{parent}: {parent} is not a folder" in result.stderr
    result = run([data["b"], data["b"], "--save-stats", tmp_path / "a_folder", "--inception", data["weights"]])
    assert result.exit_code == 2 and "'--save-stats': File " in result.stderr and "is a directory" in result.stderr
    with pytest.raises(StatsFileError, match="a_folder: is a folder; give a file name"):  # the API checks it too
        check_stats_path(tmp_path / "a_folder")

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(stats.tempfile, "mkstemp", read_only)  # root writes anywhere: fake the refusal
    result = run([data["b"], data["b"], "--save-stats", tmp_path / "new" / "s.npz", "--inception", data["weights"]])
    assert result.exit_code == 1
    assert f"Error: --save-stats: {tmp_path / 'new' / 's.npz'}: cannot write in {tmp_path} (Permission denied)" \
        in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["a_file", "a_folder"]  # nothing created, no probe left


def test_save_stats_failure_after_the_work_keeps_the_results(data, features, tmp_path, monkeypatch):
    from stylenas.metrics import cli

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "save_stats", disk_full)
    ref = tmp_path / "b.npz"
    save_stats(ref, features["b"][0].mean(0), np.cov(features["b"][0], rowvar=False))
    out = tmp_path / "s.npz"
    common = [data["b"], ref, "--num", 2, "--save-stats", out, "--inception", data["weights"], "--workers", 0]
    result = run(common)
    assert result.exit_code == 1
    assert re.fullmatch(r"FID: [0-9.e+-]+", result.stdout.strip().splitlines()[-1])
    assert result.stderr.strip().splitlines()[-1] == (f"Error: --save-stats: could not write {out}: No space left on "
                                                      f"device (the results above are complete)")
    result = run(common + ["--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["fid"] > 0
    assert report["save_stats_error"].endswith("No space left on device")
    assert "saved_stats" not in report and not out.exists()


def test_lmdb_input_equals_the_same_images_in_a_folder(data, tmp_path):
    lmdb_path = tmp_path / "demo.lmdb"
    datasets.make_demo_data(str(lmdb_path), [8, 16], 5, image_format="png", progress=False)
    folder = tmp_path / "exported"
    folder.mkdir()
    for k, image in enumerate(datasets.LMDBImages(lmdb_path)):  # the largest size stored, 16
        assert image.shape == (3, 16, 16)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{k:02d}.png")
    result = run([lmdb_path, folder, "--inception", data["weights"], "--workers", 0, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["inputs"]["A"] == {"path": str(lmdb_path), "kind": "lmdb", "images": 5, "available": 5,
                                     "resolution": "16x16", "image_sizes": {"16x16": 5}, "stored_resolutions": [8, 16]}
    assert -1e-9 <= report["fid"] < 1e-6  # the same images give the same statistics
    assert format_text(report)[0] == f"A: {lmdb_path} (lmdb, 5 images, 16x16 of stored 8, 16)"  # the text output


def test_lmdb_resolution_option_and_warnings(data, tmp_path):
    big = tmp_path / "big.lmdb"
    small = tmp_path / "small.lmdb"
    datasets.make_demo_data(str(big), [8, 16], 2, image_format="png", progress=False)
    with datasets.LMDBWriter(small, [8]) as writer:  # the 8 px records of the big one, alone
        for k in range(2):
            writer.add({8: bytes(datasets.LMDBImages(big, 8).encoded(k))})
        writer.close()
    w = ["--inception", data["weights"], "--workers", 0]
    # two LMDBs of different sizes: warned before the work starts
    result = run([big, small] + w)
    warning = ("Warning: A is 16x16 and B is 8x8: both are resized to 299x299 for the network, but images of "
               "different resolutions give an FID that is not comparable with published ones (--resolution "
               "picks an .lmdb's size)")
    assert result.exit_code == 0 and warning in result.stderr
    assert result.stderr.index(warning) < result.stderr.index("A: Inception features")
    # --resolution picks the 8 px images of the big one: the two are then the same images
    report = json.loads(run([big, small, "--resolution", 8, "--json"] + w).stdout)
    assert report["inputs"]["A"]["resolution"] == "8x8" and "warnings" not in report
    assert -1e-9 <= report["fid"] < 1e-6
    # an LMDB against a folder: compared once the folder's sizes are known
    report = json.loads(run([small, data["b"], "--num-ref", 2, "--json"] + w).stdout)
    assert report["warnings"] == [warning.replace("B is 8x8", "B is 16x16").replace("A is 16x16", "A is 8x8")]


def test_pytorch_fid_statistics_agree(data, tmp_path, monkeypatch):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    inception = pytest.importorskip("pytorch_fid.inception")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / data["weights"].name).symlink_to(data["weights"])
    model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    files = sorted(data["b"].glob("*.png"))
    mu, sigma = fid_score.calculate_activation_statistics(files, model, batch_size=5, dims=2048, device="cpu",
                                                          num_workers=0)
    run([data["b"], "--save-stats", tmp_path / "b.npz", "--inception", data["weights"], "--workers", 0])
    ours = load_stats(tmp_path / "b.npz")
    np.testing.assert_allclose(ours[0], mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1], sigma, rtol=1e-4, atol=1e-6)


# --- errors: one line, non-zero exit ----------------------------------------------------------

def _bad_inputs(data, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.npz").write_bytes(b"no zip here")
    np.savez(tmp_path / "keys.npz", mean=np.zeros(3), cov=np.eye(3))
    np.savez(tmp_path / "inner.npz", mu=np.zeros(4), sigma=np.eye(3))
    save_stats(tmp_path / "d64.npz", np.zeros(64), np.eye(64))
    save_stats(tmp_path / "d2048.npz", np.zeros(2048), np.eye(2048))
    torch.save({"g_ema": {}}, tmp_path / "generator.pt")
    broken = _images(tmp_path / "broken", 3, seed=5)
    (broken / "zz_broken.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "notes.txt").write_text("hello")
    datasets.make_demo_data(str(tmp_path / "small.lmdb"), [8], 2, progress=False)
    w = ["--inception", data["weights"], "--workers", 0]
    return {
        "missing input": ([tmp_path / "nope", data["b"]] + w, "nope does not exist"),
        "folder without images": ([tmp_path / "empty", data["b"]] + w, "no images"),
        "unreadable npz": ([tmp_path / "garbage.npz", data["b"]] + w, "cannot read it as an .npz"),
        "wrong keys": ([tmp_path / "keys.npz", data["b"]] + w, "expected arrays 'mu' and 'sigma'"),
        "inconsistent npz": ([tmp_path / "inner.npz", data["b"]] + w, "expected mu \\[d\\] and sigma"),
        "npz dims differ": ([tmp_path / "d64.npz", tmp_path / "d2048.npz"], "mismatched dimensions"),
        "npz vs images": ([data["a"], tmp_path / "d64.npz"] + w, "mismatched dimensions"),
        "checkpoint": ([tmp_path / "generator.pt", data["b"]] + w,
                       "generator.pt is a generator checkpoint: say how many images to generate with --num"),
        "not an input": ([tmp_path / "notes.txt", data["b"]] + w, "not an image folder"),
        "is of npz": ([tmp_path / "d2048.npz", data["b"], "--is"] + w, "--is"),
        "kid of npz": ([data["a"], tmp_path / "d2048.npz", "--kid"] + w, "--kid needs images"),
        "nothing to do": ([data["a"]] + w, "give a second input"),
        "too few for IS": ([tmp_path / "broken", "--is", "--save-stats", tmp_path / "x.npz"] + w, "needs at least 10"),
        "broken image": ([tmp_path / "broken", data["b"]] + w, "zz_broken.png: cannot read the image"),
        "missing weights": ([data["a"], data["b"], "--workers", 0], "pt_inception-2015-12-05-6726825d.pth not found"),
        "images only deeper": ([data["a"].parent, data["b"]] + w, "add --recursive"),
        "num of npz": ([tmp_path / "d2048.npz", data["b"], "--num", 5] + w, "--num: A .* is a statistics file"),
        "num-ref of npz": ([data["b"], tmp_path / "d2048.npz", "--num-ref", 5] + w, "--num-ref: B .* is a statistics"),
        "num-ref without B": ([data["b"], "--num-ref", 3, "--save-stats", tmp_path / "x.npz"] + w, "none was given"),
        "num too small": ([data["a"], data["b"], "--num", 1] + w, "--num must be at least 2"),
        "resolution, no lmdb": ([data["a"], data["b"], "--resolution", 16] + w, "no input is one"),
        "resolution not stored": ([tmp_path / "small.lmdb", data["b"], "--resolution", 16] + w,
                                  "A: .*small.lmdb: resolution 16 is not stored; it holds 8"),
    }


def test_errors_are_one_line(data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("STYLENAS_INCEPTION", raising=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    for case, (args, pattern) in _bad_inputs(data, tmp_path).items():
        result = run(args)
        assert result.exit_code != 0, case
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and re.search(pattern, errors[0]), (case, result.stderr)
        assert "Traceback" not in result.output and result.stdout == "", case
        assert not (tmp_path / "x.npz").exists()
        assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no temporary file left


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_cuda_without_gpu(data):
    result = run([data["a"], data["b"], "--device", "cuda", "--inception", data["weights"]])
    assert result.exit_code != 0 and "no CUDA GPU" in result.stderr


def test_real_command_line(data):
    """The script as users run it: a subprocess with DataLoader worker processes (errors and
    exit codes are checked in-process above)."""
    ok = subprocess.run([sys.executable, str(SCRIPT), str(data["b"]), str(data["b"]), "--inception",
                         str(data["weights"]), "--workers", "2", "--batch", "4"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    last = ok.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"FID: [0-9.e+-]+", last) and abs(float(last.split()[1])) < 1e-6
    assert "A: Inception features" in ok.stderr and "Device: cpu" in ok.stdout
