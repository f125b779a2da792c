"""CT-GAN as DEGAS retrains against it (conventional/losses.py, conventional/spaces/ctgan.py), pinned to
the authors' CIFAR-10 ResNet code, biuyq/CT-GAN CT-GANs/tensorflow_generative_model/CT_gan_cifar_resnet.py
(``ctgan.py:N``) and its tflib ops. The values below are transcribed from those files, not from ours."""
import json
import math

import numpy as np
import pytest
import torch

from stylenas.conventional.losses import consistency_term, d_loss
from stylenas.conventional.networks import build_networks
from stylenas.conventional.spaces.ctgan import CTGANDiscriminator
from stylenas.conventional.train import TrainConfig, run_training
from helpers import images

pytestmark = pytest.mark.usefixtures("one_thread")

# transcribed from the authors' code
LAMBDA_2, FACTOR_M, FEATURE_WEIGHT = 2.0, 0.0, 0.1  # ctgan.py:37, 39, 289
KEEP_PROBABILITIES = (0.8, 0.5, 0.5)  # ctgan.py:226, after blocks 2, 3, 4 (ctgan.py:172-177)
ITERS = 100_000  # ctgan.py:42


def ctgan_formula(d1, d2, f1, f2, lambda_2=LAMBDA_2, m=FACTOR_M):
    """ctgan.py:288-291 in numpy: CT = L2 (D - D')^2 + L2 0.1 mean_k (D_ - D_')^2; mean(max(CT - M, 0))."""
    ct = lambda_2 * np.square(d1 - d2) + lambda_2 * FEATURE_WEIGHT * np.mean(np.square(f1 - f2), axis=1)
    return np.mean(np.maximum(ct - m, 0.0 * (ct - m)))


@pytest.mark.parametrize("margin", [0.0, 0.7])
def test_consistency_term_is_ctgans_formula(margin):
    rng = np.random.default_rng(3)
    d1, d2 = rng.normal(size=6), rng.normal(size=6)
    f1, f2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    expected = ctgan_formula(d1, d2, f1, f2, m=margin)
    got = consistency_term(*(torch.from_numpy(a) for a in (d1[:, None], f1, d2[:, None], f2)), margin=margin)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    if margin:  # M clips some images' terms to 0: the margin is subtracted per image
        assert expected > 0 and ctgan_formula(d1, d2, f1, f2, m=0.0) - margin < expected


def test_ctgan_loss_uses_two_dropout_passes_of_the_critic():
    torch.manual_seed(0)
    D = CTGANDiscriminator(df_dim=8).double()
    real, fake = torch.rand(4, 3, 16, 16, dtype=torch.float64) * 2 - 1, torch.rand(4, 3, 16, 16).double() * 2 - 1
    passes = []
    D.register_forward_hook(lambda m, i, o: passes.append(o))
    torch.manual_seed(1)
    loss, stats = d_loss("ctgan", D, real, fake)
    (d1, f1), (d2, f2) = passes[0], passes[1]  # the two passes of the reals come first
    assert not torch.equal(d1, d2)  # dropout: two different passes
    expected = ctgan_formula(d1.detach().numpy()[:, 0], d2.detach().numpy()[:, 0], f1.detach().numpy(),
                             f2.detach().numpy())
    assert stats["ct"] == pytest.approx(expected, rel=1e-10)
    wasserstein = passes[2].mean() - d1.mean()  # the first pass is also the real term
    assert stats["wasserstein"] == pytest.approx(-wasserstein.item(), rel=1e-12)
    assert loss.item() == pytest.approx(wasserstein.item() + 10 * stats["gp"] + expected, rel=1e-10)
    D.eval()  # without dropout the two passes agree: no consistency term
    passes.clear()
    assert d_loss("ctgan", D, real, fake)[1]["ct"] == 0


def test_critic_is_ctgans():
    torch.manual_seed(0)
    D = CTGANDiscriminator(df_dim=8)
    assert [m.p for m in D.dropouts] == pytest.approx([1 - k for k in KEEP_PROBABILITIES])
    assert not any("weight_orig" in name or "parametrizations" in name for name, _ in D.named_parameters())
    assert D.l5.bias is not None  # tflib Linear has biases (ctgan.py:180)
    # dropout after blocks 2-4 only: in training, block 1's output is the same in two passes
    outs = {}
    for i, block in enumerate(D.blocks):
        block.register_forward_hook(lambda m, inp, out, i=i: outs.setdefault(i, []).append(out))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    out, features = D(x, features=True)
    D(x)
    assert torch.equal(outs[0][0], outs[0][1])  # block 1: no dropout before or after it
    # D_ is the mean over positions of ReLU(dropout(block 4)), D its linear map (ctgan.py:178-181)
    D.eval()
    outs.clear()
    out, features = D(x, features=True)
    torch.testing.assert_close(features, torch.relu(outs[3][0]).mean(dim=(2, 3)))
    torch.testing.assert_close(out, features @ D.l5.weight.T + D.l5.bias)


def test_critic_initialisation_is_tflibs():
    """tflib ops/conv2d.py:55-72: uniform(+-sqrt(3) s), s = sqrt(4 / (fan_in + fan_out)) with he_init,
    sqrt(2 / (fan_in + fan_out)) without (the 1x1 shortcuts, ctgan.py:131, 147); ops/linear.py:55-60: Glorot
    for the output linear; zero biases. Checked on the weights' largest value and standard deviation."""
    torch.manual_seed(0)
    D = CTGANDiscriminator(df_dim=64)
    expected = {  # name: (fan_in, fan_out, he_init)
        "blocks.0.c1": (3 * 9, 64 * 9, True), "blocks.0.c2": (64 * 9, 64 * 9, True),
        "blocks.0.c_sc": (3, 64, False), "blocks.1.c1": (64 * 9, 64 * 9, True), "blocks.1.c_sc": (64, 64, False),
        "blocks.3.c2": (64 * 9, 64 * 9, True), "l5": (64, 1, False)}
    modules = dict(D.named_modules())
    for name, (fan_in, fan_out, he) in expected.items():
        w, b = modules[name].weight.detach(), modules[name].bias.detach()
        stdev = math.sqrt((4.0 if he else 2.0) / (fan_in + fan_out))
        assert w.abs().max() <= math.sqrt(3) * stdev + 1e-7, name
        if w.numel() >= 1000:
            assert w.std().item() == pytest.approx(stdev, rel=0.08), name
        assert torch.all(b == 0), name
    assert modules["blocks.2"].c_sc is None  # identity shortcuts in the plain blocks (ctgan.py:128-129)


def test_degas_genotypes_retrain_under_ctgans_recipe(tmp_path):
    from stylenas.conventional.sources import unsourced
    from stylenas.conventional.train import settings_of
    from stylenas.conventional.genotypes import load_genotype
    from stylenas.conventional.spaces.degas_dag import DegasSuperGenerator

    genotype = DegasSuperGenerator(16, 4, 8, 1).genotype()
    path = tmp_path / "degas.json"
    genotype.save(path)
    s = settings_of(TrainConfig(str(path), "mem", str(tmp_path / "x")), 1000, 32, load_genotype(str(path)))
    assert (s["loss"], s["steps"], s["lr"], s["betas"], s["n_critic"], s["d_batch"], s["g_batch"]) == (
        "ctgan", ITERS, 2e-4, [0.0, 0.9], 5, 64, 128)  # ctgan.py:40-50, 333
    _, D = build_networks(str(path), 16, 4, 8, 8, discriminator="ctgan")
    assert isinstance(D, CTGANDiscriminator)
    run = TrainConfig(str(path), "mem", str(tmp_path / "run"), preset="tiny", steps=2, device="cpu")
    from stylenas.conventional.commands import retrain_sources  # the method's table, as train-conventional

    run_training(run, dataset=images(12, 16), log=lambda line: None, sources=retrain_sources)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["config"]["loss"] == "ctgan" and "dropouts.0.p" not in state["D"] and "l5.bias" in state["D"]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "CT_gan_cifar_resnet.py" in record["loss"]["source"] and not unsourced(record)


def test_ctgan_loss_refused_for_genotypes_with_their_own_discriminator(tmp_path):
    from stylenas.conventional.genotypes import ConventionalGenotype
    from stylenas.conventional.spaces.dggan_grown import base_body
    from stylenas.conventional.train import TrainError

    path = tmp_path / "dggan.json"
    ConventionalGenotype("dggan", 8, base_body(4, [4])).save(path)
    config = TrainConfig(str(path), "mem", str(tmp_path / "x"), preset="tiny", steps=1, loss="ctgan", device="cpu")
    with pytest.raises(TrainError, match="--loss ctgan"):
        run_training(config, dataset=images(8, 8), log=lambda line: None)
