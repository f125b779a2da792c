"""scripts/generate.py and generator checkpoints as FID inputs."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylenas.search.genotype import Genotype
from stylenas.train.checkpoint import capture_rng, load_generator, save_checkpoint
from stylenas.train.config import resolve_config
from stylenas.train.distributed import Dist
from stylenas.train.generate import GeneratedImages, checkpoint_images, generate, parse_seeds
from stylenas.train.commands import generate_command
from stylenas.train.stylegan2 import StyleGAN2Trainer, build_networks

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = resolve_config("tiny", 8, batch=4, mbstd_group=2, channel_base=64, channel_max=8, z_dim=8, w_dim=8)
    genotype = Genotype.original(8)
    trainer = StyleGAN2Trainer(*build_networks(genotype, config), config, Dist())
    trainer.step(torch.rand(4, 3, 8, 8) * 2 - 1)  # one step: w_avg and noise strengths move off their init
    path = tmp_path_factory.mktemp("ckpt") / "network-snapshot-000000.004.pt"
    save_checkpoint({"kind": "stylegan2", **trainer.state_dict(), "rng": [capture_rng()],
                     "genotype": genotype.to_dict(), "config": config.to_dict()}, path)
    return path


def run(args):
    return CliRunner().invoke(generate_command, [str(a) for a in args])


def pngs(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(Path(folder).glob("seed*.png"))}


def test_same_seed_same_image(checkpoint, tmp_path):
    assert run(["--ckpt", checkpoint, "--seeds", "0-3", "--outdir", tmp_path / "a", "--device", "cpu"]).exit_code == 0
    result = run(["--ckpt", checkpoint, "--seeds", "2,3", "--outdir", tmp_path / "b", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    a, b = pngs(tmp_path / "a"), pngs(tmp_path / "b")
    assert list(a) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png"]
    assert a["seed0000.png"].shape == (8, 8, 3)
    for name in b:  # another batch composition, the same pictures
        assert np.array_equal(a[name], b[name])
    assert not np.array_equal(a["seed0000.png"], a["seed0001.png"])
    result = run(["--ckpt", checkpoint, "--seeds", "2", "--trunc", "0.3", "--outdir", tmp_path / "t", "--device", "cpu"])
    assert result.exit_code == 0 and not np.array_equal(pngs(tmp_path / "t")["seed0002.png"], a["seed0002.png"])
    result = run(["--ckpt", checkpoint, "--seeds", "0-3", "--grid", "--mix-rows", "5,6", "--outdir", tmp_path / "g",
                  "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "g" / "grid.png").size == (4 * 9 + 1, 9 + 1)
    assert Image.open(tmp_path / "g" / "mixing.png").size == (5 * 9 + 1, 3 * 9 + 1)


def test_generate_errors(checkpoint, tmp_path):
    result = run(["--ckpt", tmp_path / "missing.pt", "--outdir", tmp_path / "o"])
    assert result.exit_code != 0 and "missing.pt: checkpoint not found" in result.output
    result = run(["--ckpt", checkpoint, "--seeds", "3-1", "--outdir", tmp_path / "o"])
    assert result.exit_code != 0 and "--seeds" in result.output
    result = run(["--ckpt", checkpoint, "--seeds", "0", "--mix-rows", "1", "--mix-cutoff", "9", "--outdir",
                  tmp_path / "o", "--device", "cpu"])
    assert result.exit_code != 0 and "--mix-cutoff must be in 1..3" in result.output
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert parse_seeds("0-2, 7") == [0, 1, 2, 7]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("x")


@pytest.mark.slow
def test_checkpoint_as_fid_input_equals_its_images_as_pngs(checkpoint, tmp_path):
    """fid.py on a checkpoint scores the quantised images that would be saved as PNGs."""
    from helpers import write_weights
    from stylenas.metrics.cli import FIDError, evaluate

    weights = write_weights(tmp_path / "weights")
    images = checkpoint_images(checkpoint, 12, device="cpu")
    assert isinstance(images, GeneratedImages) and len(images) == 12 and images[5].dtype == torch.uint8
    again = checkpoint_images(checkpoint, 12, device="cpu")
    assert all(torch.equal(images[i], again[i]) for i in range(12))  # the same images every time
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    reference = tmp_path / "ref"
    reference.mkdir()
    G, _ = load_generator(checkpoint)
    for i, image in enumerate(generate(G, list(range(100, 110)), device="cpu")):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(reference / f"{i:03d}.png")
    common = dict(inception=weights, device="cpu", workers=0, progress=False)
    from_ckpt = evaluate(str(checkpoint), str(reference), num=12, **common)
    from_pngs = evaluate(str(folder), str(reference), **common)
    assert from_ckpt["fid"] == pytest.approx(from_pngs["fid"], rel=1e-9, abs=1e-9)
    assert from_ckpt["inputs"]["A"]["kind"] == "checkpoint"
    with pytest.raises(FIDError, match="say how many images to generate with --num "):
        evaluate(str(checkpoint), str(reference), **common)
    with pytest.raises(FIDError, match="B: .* say how many images to generate with --num-ref "):
        evaluate(str(reference), str(checkpoint), **common)
    truncated = evaluate(str(checkpoint), str(reference), num=12, trunc=0.5, **common)  # fid.py --trunc
    assert truncated["fid"] != pytest.approx(from_ckpt["fid"], rel=1e-6)


@pytest.mark.slow
def test_fid_shares_between_processes_merge_to_the_single_process_statistics(checkpoint, tmp_path):
    from helpers import write_weights
    from stylenas.metrics import InceptionV3FID
    from stylenas.train.generate import generator_feature_stats, merge_feature_stats

    net = InceptionV3FID(weights=write_weights(tmp_path / "weights"))
    G, _ = load_generator(checkpoint)
    whole = generator_feature_stats(G, 10, net, "cpu", batch=4)
    parts = [generator_feature_stats(G, 10, net, "cpu", batch=4, rank=r, world_size=3) for r in range(3)]
    assert [p.n for p in parts] == [4, 4, 2]
    merged = merge_feature_stats([(p.n, p.mean, p.scatter) for p in parts] + [(0, None, None)])
    assert merged.n == 10
    assert torch.allclose(merged.mean, whole.mean, atol=1e-10)
    assert torch.allclose(merged.scatter, whole.scatter, atol=1e-8, rtol=1e-8)
