"""The alphaGAN searcher: the duality gap on a toy game, which optimiser moves what, and the
StyleGAN2 search run end to end with an exact resume."""
import json

import pytest
import torch
from torch import nn

from stylenas.search.alphagan import PRESETS, AdversarialLoss, AlphaGANSearcher, NonFiniteError, Preset
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
    kwargs = {"sample_every": 2, "checkpoint_every": 2, "workers": 0, **kwargs}
    return SearchConfig(data="memory", outdir=str(outdir), preset="tiny", resolution=16, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("space,dynamic_w,workers", [("micro", True, 0), ("macro", False, 1)])
def test_tiny_search_runs_moves_alphas_and_resumes_exactly(tmp_path, space, dynamic_w, workers):
    data = MemoryImages(24, 16)
    quiet = lambda line: None  # noqa: E731
    kwargs = dict(space=space, dynamic_w=dynamic_w, workers=workers)
    full = run_search(tiny_config(tmp_path / "full", iters=4, **kwargs), data, log=quiet)
    run_search(tiny_config(tmp_path / "split", iters=2, **kwargs), data, log=quiet)
    resumed = run_search(tiny_config(tmp_path / "split", iters=4, resume=True, **kwargs), data, log=quiet)
    assert resumed.arch_parameters == full.arch_parameters
    assert resumed.layers == full.layers
    # the alphas moved away from their near-uniform start
    assert max(abs(v) for values in full.arch_parameters.values() for v in values) > 0.01
    out = tmp_path / "full"
    assert Genotype.load(out / "genotype.json").layers == full.layers
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "duality_gap", "entropy", "skipped_steps", "nonfinite_streak"} <= set(lines[0])
    assert lines[0]["skipped_steps"] == {"d_loss": 0, "g_loss": 0, "d_bar_loss": 0, "g_bar_loss": 0,
                                         "duality_gap": 0, "minmax": 0, "maxmin": 0}
    # the softmax weights of every alpha and beta, each logged iteration
    for line in lines:
        assert set(line["arch_weights"]) == set(full.arch_parameters)
        assert all(sum(w) == pytest.approx(1, abs=1e-5) for w in line["arch_weights"].values())
    assert lines[-1]["arch_weights"] == {key: [round(v, 6) for v in torch.softmax(torch.tensor(values), 0).tolist()]
                                         for key, values in full.arch_parameters.items()}
    assert (out / "alphas.png").stat().st_size > 0 and (out / "samples" / "iter000004.png").is_file()
    split_lines = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in split_lines] == [1, 2, 3, 4]
    assert full.paradigm == space + ("+dynamic_w" if dynamic_w else "")
    # the genotype builds the discrete network
    assert Genotype.load(out / "genotype.json").build_generator(z_dim=32, w_dim=32)(torch.randn(1, 32)).shape == \
        (1, 3, 16, 16)


@pytest.mark.slow
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
    with pytest.raises(SearchError, match="searched on other data \\(24 images of 16px.*holds 30 images"):
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


# ----------------------------------------------------------------- the test-weight part (Algorithm 2)

class CountingBatches:
    """Constant batches that count how many were read."""

    def __init__(self, value):
        self.value, self.taken = value, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.taken += 1
        return torch.full([4, 1], self.value)


class QuadDiscriminator(nn.Module):
    """D(x) = a x + b x^2 + c: its gradient for G's output changes as G and D move (a linear D
    gives Adam sign-only steps, the same against any D of the same sign)."""

    def __init__(self, a=0.5, b=-1.0, c=0.1):
        super().__init__()
        self.coef = nn.Parameter(torch.tensor([a, b, c]))

    def forward(self, x):
        return self.coef[0] * x + self.coef[1] * x ** 2 + self.coef[2]


def hinge_v(G, D, real):
    """V(G, D) = -E[relu(1 - D(x))] - E[relu(1 + D(G(z)))] on one batch (toy G ignores z)."""
    with torch.no_grad():
        return float(AdversarialLoss("hinge").value(D(real), D(G(torch.zeros(4, 1)))))


def adam_replica(module, params, loss_fn, steps, preset):
    """`steps` plain Adam steps of `params` (of a copy) on loss_fn(copy)."""
    opt = torch.optim.Adam(params, lr=preset.lr, betas=preset.betas)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(module).backward()
        opt.step()
    return module


def test_test_weight_part_best_responses_from_copies_on_the_validation_half():
    import copy

    torch.manual_seed(0)
    preset = Preset(T=2, R=4, S=3, iterations=1, batch=4, lr=0.05, arch_weight_decay=0.0)
    G, D = ToyGenerator(consts=(-0.3, 0.1)), QuadDiscriminator()
    searcher = AlphaGANSearcher(G, D, lambda n: torch.zeros(n, 1), preset)
    val_real = torch.full([4, 1], 0.6)
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    g_state, d_state = copy.deepcopy(searcher.g_opt.state_dict()), copy.deepcopy(searcher.d_opt.state_dict())

    val = CountingBatches(0.6)
    G_bar, D_bar = searcher.test_weight_part(val)
    assert val.taken == preset.R  # D-bar's steps read real batches of the validation half
    assert G_bar is not G and D_bar is not D
    # G and D and their optimisers are untouched (the parts work on copies)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G0.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(D.state_dict().values(), D0.state_dict().values()))
    assert searcher.g_opt.state_dict() == g_state and searcher.d_opt.state_dict() == d_state
    # D-bar raises V(G, .), G-bar lowers V(., D)
    assert hinge_v(G, D_bar, val_real) > hinge_v(G, D, val_real) + 1e-3
    assert hinge_v(G_bar, D, val_real) < hinge_v(G, D, val_real) - 1e-3
    # exactly R Adam steps each: D-bar against the current G's fakes, G-bar against D (not D-bar)
    adv = AdversarialLoss("hinge")
    fake = G(torch.zeros(4, 1)).detach()
    d_expected = copy.deepcopy(D)
    adam_replica(d_expected, d_expected.parameters(), lambda d: adv.d_loss(d(val_real), d(fake)), preset.R, preset)
    assert all(torch.allclose(a, b) for a, b in zip(D_bar.parameters(), d_expected.parameters()))
    g_against_d = copy.deepcopy(G)
    adam_replica(g_against_d, [g_against_d.consts], lambda g: adv.g_loss(D(g(torch.zeros(4, 1)))), preset.R, preset)
    g_against_d_bar = copy.deepcopy(G)
    adam_replica(g_against_d_bar, [g_against_d_bar.consts], lambda g: adv.g_loss(D_bar(g(torch.zeros(4, 1)))),
                 preset.R, preset)
    assert torch.allclose(G_bar.consts, g_against_d.consts)
    assert not torch.allclose(G_bar.consts, g_against_d_bar.consts)  # the test can tell the two apart
    assert torch.equal(G_bar.alpha, G.alpha)  # weights only

    # a whole iteration: the weight part reads the training half, the two others the validation half
    train, val = CountingBatches(0.6), CountingBatches(-0.2)
    searcher.iteration(train, val)
    assert train.taken == preset.T and val.taken == preset.R + preset.S


# ----------------------------------------------------------------- non-finite steps

@pytest.mark.parametrize("fused", [True, False])
def test_guarded_step_skips_a_non_finite_loss_and_keeps_the_optimiser_state(fused):
    torch.manual_seed(0)
    from stylenas.search.alphagan import adam, guarded_step

    w = torch.nn.Parameter(torch.randn(5))
    opt = adam([w], 0.1, (0.5, 0.9)) if fused else torch.optim.Adam([w], lr=0.1, betas=(0.5, 0.9))
    assert bool(opt.defaults.get("fused")) == fused
    assert not bool(guarded_step(opt, (w * float("nan")).sum()))  # first step: no state yet
    assert torch.isfinite(w).all()
    assert all(torch.equal(v, torch.zeros_like(v)) for v in opt.state[w].values())
    reference = torch.nn.Parameter(w.detach().clone())
    ref_opt = torch.optim.Adam([reference], lr=0.1, betas=(0.5, 0.9))
    for step in range(4):
        assert bool(guarded_step(opt, (w ** 2).sum()))
        ref_opt.zero_grad()
        (reference ** 2).sum().backward()
        ref_opt.step()
        if step == 1:  # an inf loss in the middle changes nothing
            before = w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()}
            assert not bool(guarded_step(opt, (w * float("inf")).sum()))
            assert torch.equal(w, before[0])
            assert all(torch.equal(opt.state[w][k], v) for k, v in before[1].items())
    assert torch.allclose(w, reference, atol=1e-6)  # the skipped steps did not count as Adam steps


class NaNAfter:
    """A hinge loss whose game value turns NaN from a given call on (the gap then is NaN)."""

    def __init__(self, calls):
        self.calls = calls

    def __call__(self, real_logits, fake_logits):
        self.calls -= 1
        value = AdversarialLoss("hinge").value(real_logits, fake_logits)
        return value * float("nan") if self.calls < 0 else value


def test_non_finite_gaps_are_skipped_counted_and_stop_the_search_after_a_limit():
    torch.manual_seed(0)
    preset = Preset(T=1, R=1, S=3, iterations=1, batch=4, arch_lr=0.1, arch_weight_decay=0.0)
    searcher = AlphaGANSearcher(ToyGenerator(), ToyDiscriminator(), lambda n: torch.randn(n, 1), preset,
                                max_nonfinite=4)
    searcher.adv.value = NaNAfter(2 * 1)  # arch step 1 finite; steps 2 and 3 NaN
    alpha0 = searcher.G.alpha.detach().clone()
    stats = searcher.iteration(constant_batches(0.8), constant_batches(0.8))
    assert stats["skipped_steps"]["duality_gap"] == 2 and stats["skipped_steps"]["d_loss"] == 0
    assert stats["nonfinite_streak"] == 2 and stats["duality_gap"] is not None
    assert torch.isfinite(searcher.G.alpha).all() and not torch.equal(searcher.G.alpha, alpha0)
    # every gap NaN: the weight steps (finite) reset the run, 3 in a row stay under the limit of 4 ...
    searcher.adv.value = NaNAfter(0)
    alpha1 = searcher.G.alpha.detach().clone()
    stats = searcher.iteration(constant_batches(0.8), constant_batches(0.8))
    assert stats["duality_gap"] is None and stats["skipped_steps"]["duality_gap"] == 3
    assert torch.equal(searcher.G.alpha, alpha1) and searcher.iterations_done == 2
    # ... a loss that is NaN everywhere reaches it, and the iteration does not count
    searcher.adv.d_loss = lambda real, fake: (real.mean() + fake.mean()) * float("nan")
    with pytest.raises(NonFiniteError, match="4 optimiser steps in a row had a non-finite loss"):
        searcher.iteration(constant_batches(0.8), constant_batches(0.8))
    assert searcher.iterations_done == 2


@pytest.mark.slow
def test_search_with_nan_gaps_logs_them_and_never_writes_non_finite_parameters(tmp_path, monkeypatch):
    from stylenas.search import alphagan, run

    quiet = lambda line: None  # noqa: E731
    data = MemoryImages(24, 16)
    out = tmp_path / "s"
    run_search(tiny_config(out, iters=2), data, log=quiet)
    genotype_bytes = (out / "genotype.json").read_bytes()
    state_bytes = (out / "search-state.pt").read_bytes()
    monkeypatch.setattr(alphagan.AdversarialLoss, "value",
                        lambda self, real, fake: (real.mean() + fake.mean()) * float("nan"))
    # tiny: S = 2 arch steps per iteration, all NaN; the limit of 2 in a row stops at once
    with pytest.raises(NonFiniteError, match="2 optimiser steps in a row"):
        run_search(tiny_config(out, iters=4, resume=True, max_nonfinite=2), data, log=quiet)
    assert (out / "genotype.json").read_bytes() == genotype_bytes
    assert (out / "search-state.pt").read_bytes() == state_bytes
    # a larger limit: the skipped steps are counted in log.jsonl and the alphas stay as they were
    genotype = run_search(tiny_config(out, iters=3, resume=True, max_nonfinite=10), data, log=quiet)
    line = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert line["iteration"] == 3 and line["duality_gap"] is None
    assert line["skipped_steps"]["duality_gap"] == PRESETS["tiny"].S and line["nonfinite_streak"] == PRESETS["tiny"].S
    assert genotype.arch_parameters == Genotype.load(out / "genotype.json").arch_parameters
    assert json.loads(genotype_bytes)["arch_parameters"] == genotype.arch_parameters
    # parameters that are not finite are never written
    searcher = AlphaGANSearcher(ToyGenerator(), ToyDiscriminator(), lambda n: torch.randn(n, 1), PRESETS["tiny"])
    with torch.no_grad():
        searcher.G.alpha[0] = float("nan")
    with pytest.raises(NonFiniteError, match="architecture parameters are not finite"):
        run.check_finite(searcher, "genotype.json")


@pytest.mark.slow
def test_checkpoint_every_zero_writes_only_at_the_end(tmp_path, monkeypatch):
    saves = []
    original = Genotype.save
    monkeypatch.setattr(Genotype, "save", lambda self, path: saves.append(path) or original(self, path))
    genotype = run_search(tiny_config(tmp_path / "s", iters=3, checkpoint_every=0, sample_every=0),
                          MemoryImages(24, 16), log=lambda line: None)
    assert len(saves) == 1 and genotype.source["iterations"] == 3
    assert Genotype.load(tmp_path / "s" / "genotype.json").source["iterations"] == 3


def test_only_the_stylegan2_presets_are_offered(tmp_path):
    with pytest.raises(SearchError, match="--preset must be one of stylegan2, tiny"):
        run_search(SearchConfig(data="x", outdir=str(tmp_path), preset="s"), MemoryImages(24, 16))
    assert {"s", "l", "stylegan2", "tiny"} <= set(PRESETS)  # s and l stay for the conventional search
