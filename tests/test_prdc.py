"""Precision / recall (Kynkaanniemi et al. 2019) and density / coverage (Naeem et al. 2020) against a
brute-force numpy oracle written from the papers' definitions, a hand-computed case that pins the
closed/open balls, ties and duplicates, chunking, and ``stylenas fid --prdc``."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylenas.metrics import ImageFolder, InceptionV3FID, extract_features
from stylenas.metrics.cli import format_text
from stylenas.metrics.commands import fid_command
from stylenas.metrics.prdc import nearest_neighbour_radii, prdc
from helpers import write_weights


def oracle(fake, real, pr_k=3, dc_k=5):
    """The four definitions, one sample at a time, distances from differences.

    k-NN radius of sample i: the k-th smallest distance to the *other* samples of its set (index
    i left out, so a duplicate of i counts at distance 0). Precision/recall: closed ball
    (Kynkaanniemi eq. 1, f = 1 when ||phi - phi'|| <= ||phi' - NN_k(phi')||); density/coverage: open
    ball (Naeem et al.'s code compares with <)."""
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)

    def dist(a, b):
        return np.sqrt(((a - b) ** 2).sum())

    def radius(points, i, k):
        others = [dist(points[i], points[j]) for j in range(len(points)) if j != i]
        return sorted(others)[k - 1]

    real_pr = [radius(real, i, pr_k) for i in range(len(real))]
    real_dc = [radius(real, i, dc_k) for i in range(len(real))]
    fake_pr = [radius(fake, j, pr_k) for j in range(len(fake))]
    precision = np.mean([any(dist(y, x) <= r for x, r in zip(real, real_pr)) for y in fake])
    recall = np.mean([any(dist(x, y) <= r for y, r in zip(fake, fake_pr)) for x in real])
    density = sum(dist(y, x) < r for y in fake for x, r in zip(real, real_dc)) / (dc_k * len(fake))
    coverage = np.mean([min(dist(x, y) for y in fake) < r for x, r in zip(real, real_dc)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def check(fake, real, **kwargs):
    got = prdc(torch.as_tensor(fake), torch.as_tensor(real), **kwargs)
    want = oracle(fake, real, **{k: v for k, v in kwargs.items() if k in ("pr_k", "dc_k")})
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    return got


@pytest.mark.parametrize("m, n, d, shift", [(40, 50, 8, 0.0), (33, 27, 16, 0.7), (60, 20, 4, 2.0)])
def test_random_features_match_the_oracle(m, n, d, shift):
    rng = np.random.default_rng(m + n)
    real = rng.standard_normal((n, d))
    fake = rng.standard_normal((m, d)) * 1.3 + shift
    got = check(fake.astype(np.float32), real.astype(np.float32))
    assert 0 < got["precision"] <= 1 and got["density"] > 0  # a case where the counts are not trivial


def test_hand_computed_one_dimensional_case_pins_closed_and_open_balls():
    # reals 0, 1, 3 with k = 1: radii 1, 1, 2; the fake at 2 lies on the boundary of the ball of 1
    # (closed: inside, so precision 1) and strictly inside only the ball of 3 (open: density 1 / 1).
    real, fake = np.array([[0.0], [1.0], [3.0]]), np.array([[2.0], [2.5]])
    got = prdc(torch.tensor(fake), torch.tensor(real), pr_k=1, dc_k=1)
    # fake radii (k = 1): 0.5 each; the real 3 lies on the boundary of the ball of 2.5 -> recall 1/3
    # densities: 2 is inside the open ball of 3 (|2-3| = 1 < 2); 2.5 inside that of 3 -> 2 / (1 * 2)
    # coverage: nearest fake of 0 is 2 (not < 1), of 1 is 2 (1, not < 1), of 3 is 2.5 (0.5 < 2) -> 1/3
    assert got == pytest.approx({"precision": 1.0, "recall": 1 / 3, "density": 1.0, "coverage": 1 / 3}, abs=1e-12)
    assert got == pytest.approx(oracle(fake, real, pr_k=1, dc_k=1))


def test_ties_and_duplicates_match_the_oracle():
    # Integer features: every squared distance is exact, so boundary ties are real ties.
    rng = np.random.default_rng(3)
    real = rng.integers(-3, 4, (30, 3)).astype(np.float64)
    real[10:14] = real[0]  # four duplicates of one real: its k-NN radius (k <= 4) is 0
    fake = rng.integers(-3, 4, (25, 3)).astype(np.float64)
    fake[:5] = real[:5]  # fakes on top of reals (and of the duplicated one)
    fake[20:] = fake[19]  # duplicated fakes
    radii = nearest_neighbour_radii(torch.tensor(real), [3])[3]
    assert float(radii[0]) == 0.0  # the duplicates are its three nearest neighbours at distance 0
    check(fake, real)
    check(fake, real, pr_k=1, dc_k=2)


def test_identical_sets_are_fully_precise_and_covered():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 6))
    got = check(x, x)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(7)
    real, fake = torch.tensor(rng.standard_normal((70, 5))), torch.tensor(rng.standard_normal((45, 5)) + 0.3)
    whole = prdc(fake, real)
    assert prdc(fake, real, max_bytes=8 * 70 * 3) == whole  # three rows per chunk
    assert prdc(fake, real, max_bytes=1) == whole  # one row per chunk


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="more than 5 samples"):  # reals: radii for k = 5
        prdc(torch.randn(20, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="more than 3 samples"):  # fakes: radii for k = 3
        prdc(torch.randn(3, 3), torch.randn(20, 3))
    with pytest.raises(ValueError, match="dimension"):
        prdc(torch.randn(20, 3), torch.randn(20, 4))
    with pytest.raises(ValueError, match="expected features"):
        prdc(torch.randn(20), torch.randn(20, 4))


# ------------------------------------------------------------------ the command line


def _folder(root, n, seed):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for k in range(n):
        pixels = (rng.integers(0, 256, (1, 1, 3)) * 0.5 + rng.integers(0, 128, (16, 16, 3))).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{k:03d}.png")
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("prdc")
    return {"weights": write_weights(root / "weights"), "a": _folder(root / "a", 7, 1),
            "b": _folder(root / "b", 8, 2), "root": root}


def test_fid_prdc_json_equals_the_oracle_on_the_pool_features(inputs):
    out = CliRunner().invoke(fid_command, [str(inputs["a"]), str(inputs["b"]), "--prdc", "--json", "--device", "cpu",
                                           "--workers", "0", "--inception", str(inputs["weights"])])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.strip().splitlines()[-1])
    net = InceptionV3FID(weights=inputs["weights"])
    feats = {name: extract_features(net, ImageFolder(inputs[name]), keep_features=True)[1].numpy()
             for name in ("a", "b")}
    want = oracle(feats["a"], feats["b"])  # A evaluated against the reference B
    for key in ("precision", "recall", "density", "coverage"):
        assert result[key] == pytest.approx(want[key], abs=1e-9), key
    assert result["prdc"]["k_precision_recall"] == 3 and result["prdc"]["k_density_coverage"] == 5
    assert "fid" in result

    text = format_text(result)  # what the command prints without --json
    assert any(line.startswith("Precision: ") for line in text) and text[-1].startswith("FID: ")


def test_fid_prdc_refuses_a_statistics_file_as_reference(inputs):
    stats = inputs["root"] / "b.npz"
    np.savez(stats, mu=np.zeros(2048), sigma=np.eye(2048))
    out = CliRunner().invoke(fid_command, [str(inputs["a"]), str(stats), "--prdc", "--inception",
                                           str(inputs["weights"])])
    assert out.exit_code != 0
    assert "--prdc: B" in out.output and "statistics file" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(fid_command, [str(inputs["a"]), "--prdc", "--save-stats", str(inputs["root"] / "x.npz"),
                                           "--inception", str(inputs["weights"])])
    assert out.exit_code != 0 and "--prdc evaluates A against a reference B" in out.output
