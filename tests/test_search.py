"""The alphaGAN searcher: the duality gap on a toy game, which optimiser moves what, and the
StyleGAN2 search run end to end with an exact resume."""
import json

import pytest
import torch
from torch import nn

from stylenas.search.alphagan import PRESETS, AdversarialLoss, AlphaGANSearcher, Preset
from stylenas.search.genotype import Genotype
from stylenas.search.run import SearchConfig, SearchError, run_search


class ToyGenerator(nn.Module):
    """Outputs the mixture softmax(alpha) . consts as a one-pixel "image"."""

    def __init__(self, consts=(-0.5, 0.5)):
        super().__init__()
        self.consts = nn.Parameter(torch.tensor(consts))
        self.alpha = nn.Parameter(torch.zeros(len(consts)))

    def forward(self, z):
        value = torch.softmax(self.alpha, 0) @ self.consts
        return value.expand(z.shape[0], 1) + 0 * z[:, :1]

    def weight_parameters(self):
        return [self.consts]

    def arch_parameters(self):
        return [self.alpha]


class ToyDiscriminator(nn.Module):
    def __init__(self, scale=1.0, shift=0.0):
        super().__init__()
        self.scale, self.shift = nn.Parameter(torch.tensor(scale)), nn.Parameter(torch.tensor(shift))

    def forward(self, x):
        return self.scale * x + self.shift


def toy_searcher(T=0, R=0, S=1, arch_lr=0.1):
    preset = Preset(T=T, R=R, S=S, iterations=1, batch=4, arch_lr=arch_lr, arch_weight_decay=0.0)
    return AlphaGANSearcher(ToyGenerator(), ToyDiscriminator(), lambda n: torch.randn(n, 1), preset)


def constant_batches(value):
    while True:
        yield torch.full([4, 1], value)


def hinge_value(real_logit, fake_logit):
    return -(max(0.0, 1 - real_logit) + max(0.0, 1 + fake_logit))


def test_duality_gap_matches_hand_computation():
    searcher = toy_searcher(S=1, arch_lr=0.0)
    # D-bar(x) = 2x + 0.5, D(x) = x; G outputs 0 (uniform mixture of -0.5 and 0.5); G-bar outputs 0.5
    D_bar = ToyDiscriminator(2.0, 0.5)
    G_bar = ToyGenerator(consts=(0.5, 0.5))
    stats = searcher.arch_part(constant_batches(0.8), G_bar, D_bar)
    minmax = hinge_value(2 * 0.8 + 0.5, 2 * 0.0 + 0.5)
    maxmin = hinge_value(0.8, 0.5)
    assert stats["minmax"] == pytest.approx(minmax) and stats["maxmin"] == pytest.approx(maxmin)
    assert stats["duality_gap"] == pytest.approx(minmax - maxmin)


def test_gap_is_zero_when_the_best_responses_are_the_players_themselves():
    searcher = toy_searcher(R=0, S=1, arch_lr=0.0)
    G_bar, D_bar = searcher.test_weight_part(constant_batches(0.3))  # R = 0: plain copies
    assert searcher.arch_part(constant_batches(0.3), G_bar, D_bar)["duality_gap"] == 0.0


def test_architecture_step_lowers_the_gap_and_only_the_arch_optimiser_moves_alpha():
    torch.manual_seed(0)
    searcher = toy_searcher(T=3, R=3, S=5, arch_lr=0.05)
    G = searcher.G
    alpha0 = G.alpha.detach().clone()
    searcher.weight_part(constant_batches(0.8))
    G_bar, D_bar = searcher.test_weight_part(constant_batches(0.8))
    assert torch.equal(G.alpha, alpha0)  # weight and test-weight parts leave alpha alone
    weights = [p.detach().clone() for p in G.weight_parameters()] + [p.detach().clone() for p in searcher.D.parameters()]
    # D-bar(x) = x: V(G, D-bar) = -(relu(1 - 0.8) + relu(1 + G)) falls as G's output rises, so
    # minimising the gap favours the op with the larger constant (the fakes D-bar finds most real)
    D_bar = ToyDiscriminator(1.0, 0.0)
    first = searcher.arch_part(constant_batches(0.8), G_bar, D_bar)["duality_gap"]
    again = searcher.arch_part(constant_batches(0.8), G_bar, D_bar)["duality_gap"]
    assert again < first
    larger = int(torch.argmax(G.consts))
    assert torch.softmax(G.alpha, 0)[larger] > 0.5
    after = list(G.weight_parameters()) + list(searcher.D.parameters())
    assert all(torch.equal(a, b) for a, b in zip(after, weights))  # arch part leaves weights alone


def test_adversarial_losses():
    adv = AdversarialLoss("hinge")
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert adv.d_loss(real, fake) == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert adv.value(real, fake) == -adv.d_loss(real, fake)
    logistic = AdversarialLoss("logistic")
    assert logistic.g_loss(fake) == pytest.approx(torch.nn.functional.softplus(-fake).mean())
    with pytest.raises(ValueError):
        AdversarialLoss("wgan")


def test_presets_follow_the_paper():
    assert (PRESETS["s"].T, PRESETS["s"].R, PRESETS["s"].S) == (20, 20, 20)
    assert (PRESETS["l"].T, PRESETS["l"].R, PRESETS["l"].S) == (390, 390, 20)
    sg2 = PRESETS["stylegan2"]
    assert (sg2.T, sg2.R, sg2.S, sg2.batch, sg2.iterations, sg2.channel_mult) == (20, 5, 20, 2, 500, 1 / 8)
    assert (sg2.lr, sg2.arch_lr, sg2.arch_betas, sg2.arch_weight_decay) == (2e-4, 3e-4, (0.5, 0.999), 1e-3)


class MemoryImages:
    """uint8 [3, R, R] images with some structure (gradients and a square)."""

    def __init__(self, n, resolution):
        gen = torch.Generator().manual_seed(0)
        ramp = torch.linspace(0, 255, resolution)
        images = []
        for _ in range(n):
            colour = torch.rand(3, 1, 1, generator=gen)
            img = (colour * ramp[None, None, :] * 0.5 + 64).expand(3, resolution, resolution).clone()
            x, y = torch.randint(0, resolution // 2, (2,), generator=gen).tolist()
            img[:, y:y + resolution // 3, x:x + resolution // 3] = 255 * torch.rand(3, 1, 1, generator=gen)
            images.append(img.clamp(0, 255).to(torch.uint8))
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index]


def tiny_config(outdir, **kwargs):
    return SearchConfig(data="memory", outdir=str(outdir), preset="tiny", resolution=16, sample_every=2,
                        checkpoint_every=2, **kwargs)


@pytest.mark.parametrize("space,dynamic_w", [("micro", True), ("macro", False)])
def test_tiny_search_runs_moves_alphas_and_resumes_exactly(tmp_path, space, dynamic_w):
    data = MemoryImages(24, 16)
    quiet = lambda line: None  # noqa: E731
    full = run_search(tiny_config(tmp_path / "full", iters=4, space=space, dynamic_w=dynamic_w), data, log=quiet)
    run_search(tiny_config(tmp_path / "split", iters=2, space=space, dynamic_w=dynamic_w), data, log=quiet)
    resumed = run_search(tiny_config(tmp_path / "split", iters=4, space=space, dynamic_w=dynamic_w, resume=True),
                         data, log=quiet)
    assert resumed.arch_parameters == full.arch_parameters
    assert resumed.layers == full.layers
    # the alphas moved away from their near-uniform start
    assert max(abs(v) for values in full.arch_parameters.values() for v in values) > 0.01
    out = tmp_path / "full"
    assert Genotype.load(out / "genotype.json").layers == full.layers
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "duality_gap", "entropy"} <= set(lines[0])
    assert (out / "alphas.png").stat().st_size > 0 and (out / "samples" / "iter000004.png").is_file()
    split_lines = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in split_lines] == [1, 2, 3, 4]
    assert full.paradigm == space + ("+dynamic_w" if dynamic_w else "")
    # the genotype builds the discrete network
    assert Genotype.load(out / "genotype.json").build_generator(z_dim=32, w_dim=32)(torch.randn(1, 32)).shape == \
        (1, 3, 16, 16)


def test_search_errors(tmp_path):
    quiet = lambda line: None  # noqa: E731
    with pytest.raises(SearchError, match="too few"):
        run_search(tiny_config(tmp_path / "a", iters=1), MemoryImages(6, 16), log=quiet)
    with pytest.raises(SearchError, match="power of two"):
        run_search(SearchConfig(data="x", outdir=str(tmp_path / "b"), resolution=24, preset="tiny"), log=quiet)
    run_search(tiny_config(tmp_path / "c", iters=1), MemoryImages(24, 16), log=quiet)
    with pytest.raises(SearchError, match="already holds a search"):
        run_search(tiny_config(tmp_path / "c", iters=1), MemoryImages(24, 16), log=quiet)
    with pytest.raises(SearchError, match="space='micro' \\(now 'macro'\\)"):
        run_search(tiny_config(tmp_path / "c", iters=2, space="macro", resume=True), MemoryImages(24, 16), log=quiet)
    with pytest.raises(SearchError, match="images=24 \\(now 30\\)"):
        run_search(tiny_config(tmp_path / "c", iters=2, resume=True), MemoryImages(30, 16), log=quiet)
    with pytest.raises(SearchError, match="no search-state.pt"):
        run_search(tiny_config(tmp_path / "d", iters=1, resume=True), MemoryImages(24, 16), log=quiet)


def test_on_the_supernet_only_the_architecture_part_moves_alphas_and_betas():
    from stylenas.nn import Discriminator
    from stylenas.search.supernet import SuperGenerator

    torch.manual_seed(0)
    channels = dict(channel_base=256, channel_max=16)
    G = SuperGenerator(8, z_dim=8, w_dim=8, space="macro", dynamic_w=True, **channels)
    searcher = AlphaGANSearcher(G, Discriminator(8, **channels), lambda n: torch.randn(n, 8), PRESETS["tiny"])
    data = iter(lambda: torch.rand(4, 3, 8, 8) * 2 - 1, None)
    arch0 = [p.detach().clone() for p in G.arch_parameters()]
    weights0 = [p.detach().clone() for p in G.weight_parameters()]
    searcher.weight_part(data)
    G_bar, D_bar = searcher.test_weight_part(data)
    assert all(torch.equal(a, b) for a, b in zip(G.arch_parameters(), arch0))
    assert not all(torch.equal(a, b) for a, b in zip(G.weight_parameters(), weights0))
    weights1 = [p.detach().clone() for p in G.weight_parameters()]
    searcher.arch_part(data, G_bar, D_bar)
    assert all(not torch.equal(a, b) for a, b in zip(G.arch_parameters(), arch0))  # every alpha and beta moved
    assert all(torch.equal(a, b) for a, b in zip(G.weight_parameters(), weights1))
