"""scripts/fid.py end to end: folders, LMDB and .npz inputs, --save-stats, --is, --kid, --json, errors.

Random Inception weights in pytorch-fid's layout stand in for the real file (see
test_metrics_inception). With fewer images than 2048 dimensions the exact oracle for the
FID is the n1 x n2 cross-product formula of test_metrics.
"""
import importlib.util
import json
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

from stylenas.metrics import (ImageFolder, InceptionV3FID, extract_features, inception_score,
                              kernel_inception_distance, load_stats, save_stats)
from test_metrics import exact_fid
from test_metrics_inception import write_weights

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
    """Per-folder (features, unbiased logits) computed without the script."""
    net = InceptionV3FID(weights=data["weights"])
    out = {}
    for name in ("a", "b"):
        _, feats, logits = extract_features(net, ImageFolder(data[name]), batch_size=1, keep_features=True,
                                            keep_logits=True)
        out[name] = (feats.double().numpy(), logits)
    return out


def run(args, env=None):
    result = CliRunner().invoke(fid_script.main, [str(a) for a in args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_two_folders_with_is_and_kid(data, features):
    result = run([data["a"], data["b"], "--inception", data["weights"], "--workers", 0, "--batch", 5, "--is", "--kid"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[-3:]] == ["IS", "KID", "FID"]  # FID last
    assert any("12 images" in line for line in lines) and any(line.startswith("Protocol: pytorch-fid's") for line in lines)
    assert "A: Inception features" in result.stderr  # the progress bar goes to stderr
    value = float(lines[-1].split()[1])
    assert value == pytest.approx(exact_fid(features["a"][0], features["b"][0]), rel=1e-6)
    mean, std = inception_score(features["a"][1], splits=10)
    assert lines[-3].startswith(f"IS: {mean:.6g} ± {std:.6g}")
    kid = kernel_inception_distance(features["a"][0], features["b"][0])
    assert lines[-2].startswith(f"KID: {kid[0]:.4g}"[:9]) and "100 subsets of 6" in lines[-2]


def test_json_save_stats_and_npz_inputs(data, features, tmp_path):
    out = tmp_path / "stats" / "a.npz"
    common = ["--inception", data["weights"], "--workers", 0, "--json"]
    result = run([data["a"], data["b"], "--save-stats", out, "--is"] + common)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # one JSON object, nothing else on stdout
    assert report["fid"] == pytest.approx(exact_fid(features["a"][0], features["b"][0]), rel=1e-6)
    assert report["inputs"]["A"] == {"path": str(data["a"]), "kind": "folder", "images": 12}
    assert report["inputs"]["B"]["images"] == 6 and report["saved_stats"] == str(out)
    assert report["is"]["mean"] == pytest.approx(inception_score(features["a"][1])[0], rel=1e-5)
    assert "kid" not in report

    assert sorted(p.name for p in out.parent.iterdir()) == ["a.npz"]
    mu, sigma = load_stats(out)
    np.testing.assert_allclose(mu, features["a"][0].mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(features["a"][0], rowvar=False), rtol=1e-5, atol=1e-6)
    from_npz = json.loads(run([out, data["b"]] + common).stdout)
    assert from_npz["fid"] == pytest.approx(report["fid"], rel=1e-9)
    assert from_npz["inputs"]["A"] == {"path": str(out), "kind": "npz"}
    # Two statistics files need no network at all: no --inception, and no weights anywhere.
    same = run([out, out], env={"TORCH_HOME": str(tmp_path / "empty"), "STYLENAS_INCEPTION": None})
    assert same.exit_code == 0, same.output
    assert -1e-9 <= float(same.stdout.strip().splitlines()[-1].split()[1]) < 1e-6


def test_save_stats_of_a_alone_with_num(data, features, tmp_path):
    out = tmp_path / "a8.npz"
    result = run([data["a"], "--num", 8, "--save-stats", out, "--inception", data["weights"], "--workers", 0])
    assert result.exit_code == 0, result.output
    assert "(folder, 8 images)" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"Saved statistics of A to {out}"
    mu, sigma = load_stats(out)  # the first 8 images in path order
    np.testing.assert_allclose(mu, features["a"][0][:8].mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(features["a"][0][:8], rowvar=False), rtol=1e-5, atol=1e-6)


def test_lmdb_input_equals_the_same_images_in_a_folder(data, tmp_path):
    datasets = pytest.importorskip("stylenas.datasets")
    if not hasattr(datasets, "LMDBImages") or not hasattr(datasets, "make_demo_data"):
        pytest.skip("stylenas.datasets has no LMDBImages / make_demo_data yet")
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
    assert report["inputs"]["A"] == {"path": str(lmdb_path), "kind": "lmdb", "images": 5}
    assert -1e-9 <= report["fid"] < 1e-6  # the same images give the same statistics


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
    w = ["--inception", data["weights"], "--workers", 0]
    return {
        "missing input": ([tmp_path / "nope", data["b"]] + w, "nope does not exist"),
        "folder without images": ([tmp_path / "empty", data["b"]] + w, "no images"),
        "unreadable npz": ([tmp_path / "garbage.npz", data["b"]] + w, "cannot read it as an .npz"),
        "wrong keys": ([tmp_path / "keys.npz", data["b"]] + w, "expected arrays 'mu' and 'sigma'"),
        "inconsistent npz": ([tmp_path / "inner.npz", data["b"]] + w, "expected mu \\[d\\] and sigma"),
        "npz dims differ": ([tmp_path / "d64.npz", tmp_path / "d2048.npz"], "mismatched dimensions"),
        "npz vs images": ([data["a"], tmp_path / "d64.npz"] + w, "mismatched dimensions"),
        "checkpoint": ([tmp_path / "generator.pt", data["b"]] + w, "generator.pt is a generator checkpoint: say how many images to generate with --num"),
        "not an input": ([tmp_path / "notes.txt", data["b"]] + w, "not an image folder"),
        "is of npz": ([tmp_path / "d2048.npz", data["b"], "--is"] + w, "--is"),
        "kid of npz": ([data["a"], tmp_path / "d2048.npz", "--kid"] + w, "--kid needs images"),
        "nothing to do": ([data["a"]] + w, "give a second input"),
        "too few for IS": ([tmp_path / "broken", "--is", "--save-stats", tmp_path / "x.npz"] + w, "needs at least 10"),
        "broken image": ([tmp_path / "broken", data["b"]] + w, "zz_broken.png: cannot read the image"),
        "missing weights": ([data["a"], data["b"], "--workers", 0], "pt_inception-2015-12-05-6726825d.pth not found"),
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
    assert "A: Inception features" in ok.stderr
