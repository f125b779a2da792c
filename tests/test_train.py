"""StyleGAN2 retraining: losses and regularisers against hand computations, EMA and lazy-regularisation
corrections, style mixing with dynamic W, w_avg/path-length tracking, and a tiny run that learns."""
import math

import pytest
import torch

from stylenas.search.genotype import Genotype
from stylenas.train.config import resolve_config
from stylenas.train.data import GlobalBatchSampler, flip_mask
from stylenas.train.distributed import Dist
from stylenas.train.loss import (d_logistic_loss, ema_beta, g_nonsaturating_loss, lazy_regularisation, path_lengths,
                                 r1_penalty, sanitise_gradients, update_ema)
from stylenas.train.stylegan2 import RoundInputs, StyleGAN2Trainer, TrainError, build_networks


def tiny_config(resolution=8, **overrides):
    return resolve_config("tiny", resolution, **{"batch": 4, "mbstd_group": 2, "channel_base": 64,
                                                 "channel_max": 8, "z_dim": 8, "w_dim": 8, **overrides})

pytestmark = pytest.mark.usefixtures("one_thread")


def dynamic_genotype(resolution=8):
    """W choices that differ between latent slots, tied toRGBs agreeing with the next up conv."""
    genotype = Genotype.original(resolution)
    genotype.paradigm = "micro+dynamic_w"
    choice = {"b4.conv1": 2, "b4.torgb": 5, "b8.conv0": 5, "b8.conv1": 7, "b8.torgb": 3}
    for layer in genotype.layers:
        layer["w"] = choice[layer["name"]]
    return genotype.validate()


# ------------------------------------------------------------------------------------------- losses

def test_logistic_losses_by_hand():
    fake, real = torch.tensor([[0.5], [-1.0]]), torch.tensor([[2.0], [0.0]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert g_nonsaturating_loss(fake).item() == pytest.approx((sp(-0.5) + sp(1.0)) / 2)
    assert d_logistic_loss(fake, real).item() == pytest.approx((sp(0.5) + sp(-1.0)) / 2 + (sp(-2.0) + sp(0.0)) / 2)


class QuadraticD(torch.nn.Module):
    """D(x) = (a . x)^2 / 2: grad_x D = (a . x) a, so ||grad||^2 = (a . x)^2 ||a||^2."""

    def __init__(self, a):
        super().__init__()
        self.a = torch.nn.Parameter(a)

    def forward(self, x):
        return ((x * self.a).sum([1, 2, 3]) ** 2 / 2).unsqueeze(1)


def test_r1_penalty_by_hand_and_its_gradient():
    torch.manual_seed(0)
    a, x = torch.randn(1, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64)
    D = QuadraticD(a.clone())
    penalty, logits = r1_penalty(D, x)
    ax = (x * a).sum([1, 2, 3])
    assert torch.allclose(penalty, ax ** 2 * a.square().sum())
    assert torch.allclose(logits[:, 0], ax ** 2 / 2)
    # the penalty is differentiable for D's update: d/da sum_i (a.x_i)^2 ||a||^2
    penalty.sum().backward()
    expected = sum(2 * axi * x[i:i + 1] * a.square().sum() + axi ** 2 * 2 * a for i, axi in enumerate(ax))
    assert torch.allclose(D.a.grad, expected)


def test_path_lengths_by_hand():
    """img = M @ latents^2 (elementwise square): J^T y = 2 latents * (M^T y); squared sums per slot,
    averaged over slots as NVlabs averages over its w slots, then the square root."""
    torch.manual_seed(1)
    n, slots, dim, pixels = 3, 4, 5, 2 * 4 * 4
    M = torch.randn(pixels, slots * dim, dtype=torch.float64)
    latents = torch.randn(n, slots, dim, dtype=torch.float64, requires_grad=True)
    images = (latents.flatten(1).square() @ M.T).view(n, 2, 4, 4)
    y = torch.randn(n, 2, 4, 4, dtype=torch.float64) / 4
    lengths = path_lengths(images, latents, y)
    jt_y = 2 * latents.detach() * (y.flatten(1) @ M).view(n, slots, dim)
    assert torch.allclose(lengths, jt_y.square().sum(2).mean(1).sqrt())
    lengths.sum().backward()  # create_graph: the penalty reaches what made the images
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_lazy_regularisation_and_ema_by_hand():
    lr, betas = lazy_regularisation(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17) and betas == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert lazy_regularisation(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
    assert lazy_regularisation(0.002, (0.0, 0.99), 1)[0] == pytest.approx(0.001)  # NVlabs: any set interval
    assert ema_beta(32, 10, None, 5000) == pytest.approx(0.5 ** (32 / 10000))
    assert ema_beta(32, 10, 0.05, 1000) == pytest.approx(0.5 ** (32 / 50))  # ramp-up: 0.05 * 1000 images
    assert ema_beta(32, 10, 0.05, 0) == 0.0  # first step: the EMA starts as a copy
    ema, model = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(2.0), model.running_mean.fill_(5.0)
    update_ema(ema, model, 0.75)
    assert torch.allclose(ema.weight, torch.full([3], 0.75 * 1 + 0.25 * 2))
    assert torch.equal(ema.running_mean, model.running_mean)  # buffers are copied


def test_trainer_optimisers_carry_the_lazy_correction():
    config = tiny_config(lr=0.002, gamma=1.0, pl_weight=2.0)
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(8), config), config, Dist())
    g, d = trainer.G_opt.param_groups[0], trainer.D_opt.param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 4 / 5) and g["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert d["lr"] == pytest.approx(0.002 * 16 / 17) and d["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    # NVlabs (training_loop.py) corrects whenever the interval is set: its cifar config keeps G's
    # correction with pl_weight 0, as the alphaGAN paper's retraining without path length needs
    config = tiny_config(lr=0.002, gamma=0.0, pl_weight=0.0)
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(8), config), config, Dist())
    g, d = trainer.G_opt.param_groups[0], trainer.D_opt.param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 4 / 5) and g["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert d["lr"] == pytest.approx(0.002 * 16 / 17) and d["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert [phase for phase, _ in trainer.schedule(0)] == ["Gmain", "Dmain"]  # nothing to regularise


def test_nonfinite_gradients_are_cleaned_and_counted():
    """NVlabs training_loop.py: nan_to_num(nan=0, posinf=1e5, neginf=-1e5) before every Adam step."""
    p = torch.nn.Parameter(torch.zeros(5))
    p.grad = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 2.0])
    assert int(sanitise_gradients([p])) == 3
    assert torch.equal(p.grad, torch.tensor([1.0, 0.0, 1e5, -1e5, 2.0]))


def test_nvlabs_presets():
    # CFG_SPECS against NVlabs' train.py: tests/test_nvlabs_parity.py; here how a spec becomes a config
    c = resolve_config("paper1024", 1024)
    assert (c.batch, c.mbstd_group, c.channel_base, c.lr, c.gamma, c.ema_kimg) == (32, 4, 32768, 0.002, 2, 10)
    c = resolve_config("auto", 256, world_size=2)
    assert (c.batch, c.mbstd_group, c.channel_base, c.lr) == (32, 4, 16384, 0.0025)
    assert c.gamma == pytest.approx(0.0002 * 256 ** 2 / 32) and c.ema_kimg == pytest.approx(10) and c.ema_rampup == 0.05
    c = resolve_config("stylegan2", 256, batch=16, kimg=0.5, gamma=3)
    assert (c.batch, c.kimg, c.gamma, c.z_dim, c.w_dim) == (16, 0.5, 3, 512, 512)
    with pytest.raises(ValueError, match="--mixing is a probability"):
        resolve_config("tiny", 8, mixing=1.5)
    with pytest.raises(ValueError, match="--cfg must be one of"):
        resolve_config("huge", 8)


# --------------------------------------------------------------------------------- dynamic W, mixing

def capture_latents(G):
    """The latent every style layer's affine receives, in forward order."""
    seen, hooks = [], []
    for name, _ in G.synthesis.layout:
        block, layer = name.split(".")
        module = getattr(G.synthesis.blocks[block], layer)
        hooks.append(module.affine.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach())))
    return seen, hooks


def test_style_mixing_with_dynamic_w_reads_the_chosen_latents():
    genotype = dynamic_genotype()
    config = tiny_config(mixing=1.0)
    trainer = StyleGAN2Trainer(*build_networks(genotype, config), config, Dist())
    G, num_ws = trainer.G, trainer.G.synthesis.num_ws
    assert num_ws == 4 and G.synthesis.w_slots == [0, 1, 1, 2, 3]
    (inputs,) = trainer.draw(3, "Gmain")
    assert 1 <= inputs.cutoff < num_ws and inputs.z.shape == inputs.z2.shape == (4, 8)
    seen, hooks = capture_latents(G)
    with torch.no_grad():
        trainer.run_G(inputs, track_w_avg=False)
        ws1, ws2 = G.mapping(inputs.z, update_w_avg=False), G.mapping(inputs.z2, update_w_avg=False)
    for h in hooks:
        h.remove()
    chosen = [layer["w"] - 1 for layer in genotype.layers]
    for index, (slot, w_index) in enumerate(zip(G.synthesis.w_slots, chosen)):
        source = ws1 if slot < inputs.cutoff else ws2  # after the crossover: the second latent's W_i
        assert torch.allclose(seen[index], source[:, w_index]), (index, slot, inputs.cutoff)
    assert any(slot >= inputs.cutoff for slot in G.synthesis.w_slots)


def test_no_mixing_reads_one_latent_and_truncation_is_per_w():
    genotype = dynamic_genotype()
    config = tiny_config(mixing=0.0)
    trainer = StyleGAN2Trainer(*build_networks(genotype, config), config, Dist())
    G = trainer.G
    (inputs,) = trainer.draw(0, "Gmain")
    assert inputs.z2 is None and inputs.cutoff == G.synthesis.num_ws
    with torch.no_grad():
        trainer.run_G(inputs, track_w_avg=True)
        ws = G.mapping(inputs.z, update_w_avg=False)
    # w_avg follows the global batch mean of every W_i
    assert torch.allclose(G.mapping.w_avg, ws.mean(0) * (1 - G.mapping.w_avg_beta), atol=1e-6)
    seen, hooks = capture_latents(G)
    with torch.no_grad():
        G.synthesis(G.mapping(inputs.z, truncation_psi=0.5, update_w_avg=False), noise_mode="const")
    for h in hooks:
        h.remove()
    for index, layer in enumerate(genotype.layers):
        i = layer["w"] - 1
        assert torch.allclose(seen[index], G.mapping.w_avg[i] + 0.5 * (ws[:, i] - G.mapping.w_avg[i]), atol=1e-6)


def test_path_length_phase_tracks_the_mean():
    config = tiny_config(pl_weight=2.0)
    trainer = StyleGAN2Trainer(*build_networks(dynamic_genotype(), config), config, Dist())
    inputs = trainer.draw(0, "Greg")
    assert [len(i.z) for i in inputs] == [2] and inputs[0].pl_noise.shape == (2, 3, 8, 8)  # batch / 2
    fakes, slots = trainer.run_G(inputs[0], track_w_avg=False)
    lengths = path_lengths(fakes, slots, inputs[0].pl_noise)
    trainer.phase_Greg(0, inputs)
    assert trainer.pl_mean.item() == pytest.approx(0.01 * lengths.mean().item(), rel=1e-5)


def test_every_phase_steps_every_parameter_of_its_network():
    """NVlabs adds 0 * an output to the regularisers' losses, so parameters outside the penalty's
    graph (toRGB biases in path length, D's last bias in R1) get a zero gradient and Adam still
    advances their step count and moments: after step 0 (all four phases) G's Adam has stepped
    every parameter twice, D's twice."""
    config = tiny_config(pl_weight=2.0, gamma=1.0)
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(8), config), config, Dist())
    grads = {}
    original = trainer._update

    def record(module, opt):
        grads.setdefault(module is trainer.G, []).append(
            {n: p.grad for n, p in module.named_parameters() if p.requires_grad})
        return original(module, opt)

    trainer._update = record
    trainer.step(torch.rand(4, 3, 8, 8) * 2 - 1)
    g_main, g_reg = grads[True]
    d_main, d_reg = grads[False]
    assert all(g is not None for g in g_reg.values()) and all(g is not None for g in d_reg.values())
    torgb_bias = g_reg["synthesis.blocks.b8.torgb.bias"]
    assert torch.equal(torgb_bias, torch.zeros_like(torgb_bias))
    assert torch.equal(d_reg["out.bias"], torch.zeros_like(d_reg["out.bias"]))
    for opt, module in ((trainer.G_opt, trainer.G), (trainer.D_opt, trainer.D)):
        assert all(int(opt.state[p]["step"]) == 2 for p in module.parameters())


# ------------------------------------------------------------------------------------------- data

def test_global_batches_do_not_depend_on_the_process_count():
    one = GlobalBatchSampler(10, 4, seed=3)
    two = [GlobalBatchSampler(10, 4, seed=3, rank=r, world_size=2, start_step=0) for r in range(2)]
    it1, it2 = iter(one), [iter(s) for s in two]
    for step in range(6):  # crosses epochs (10 images, batches of 4)
        full = next(it1)
        parts = [next(i) for i in it2]
        assert full[0::2] == parts[0] and full[1::2] == parts[1]
    resumed = iter(GlobalBatchSampler(10, 4, seed=3, start_step=4))
    assert next(resumed) == one.global_indices(4)
    epoch0 = [i for s in range(2) for i in one.global_indices(s)] + one.global_indices(2)[:2]
    assert sorted(epoch0) == list(range(10))  # every image once per epoch
    assert torch.equal(flip_mask(0, 5, 8), flip_mask(0, 5, 8)) and not torch.equal(flip_mask(0, 5, 64),
                                                                                    flip_mask(0, 6, 64))


# ---------------------------------------------------------------------------------- a tiny run learns

def test_tiny_training_separates_real_from_fake():
    """D learns to tell real images (smooth ramps) from G's at the start: its loss falls from 2 ln 2
    at initialisation, its accuracy rises, and it scores reals above fakes."""
    torch.manual_seed(0)
    reals_pool = torch.rand(32, 3, 8, 8) * 0.2 + torch.linspace(-0.9, 0.9, 8).view(1, 1, 1, 8)  # smooth ramps
    config = tiny_config(pl_weight=0.0, gamma=0.01)
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(8), config), config, Dist())
    first, last = None, None
    for step in range(24):
        trainer.step(reals_pool[(step * 4) % 32:(step * 4) % 32 + 4])
        if step == 0:
            first = trainer.stats.means(Dist())
    last = trainer.stats.means(Dist())
    assert first["loss_D"] == pytest.approx(2 * math.log(2), abs=0.2)
    assert last["loss_D"] < 2 * math.log(2) - 0.2 and last["D_accuracy"] > 0.75
    assert last["score_real"] > last["score_fake"] + 0.5 and last["loss_G"] > math.log(2)
    assert trainer.nimg == 24 * 4 and trainer.nan_count == 0


def test_explicit_noise_inputs():
    """Training passes the noise of the global batch explicitly: zeros equal noise_mode='none', the
    layers' constant noise equals noise_mode='const', and a wrong count is refused."""
    config = tiny_config()
    G, _ = build_networks(dynamic_genotype(), config)
    with torch.no_grad():
        G.synthesis.blocks.b8.conv1.noise_strength.fill_(0.5)
        ws = G.mapping(torch.randn(2, 8))
        layout = G.synthesis.layout
        sizes = [int(name[1:].split(".")[0]) for name, _ in layout]
        zeros = [None if kind == "torgb" else torch.zeros(2, 1, size, size) for (_, kind), size in zip(layout, sizes)]
        assert torch.equal(G.synthesis(ws, noise=zeros), G.synthesis(ws, noise_mode="none"))
        const = [None if kind == "torgb" else getattr(G.synthesis.blocks[name.split(".")[0]], name.split(".")[1])
                 .noise_const.expand(2, 1, -1, -1) for name, kind in layout]
        assert torch.allclose(G.synthesis(ws, noise=const), G.synthesis(ws, noise_mode="const"))
        assert not torch.allclose(G.synthesis(ws, noise=const), G.synthesis(ws, noise_mode="none"))
        with pytest.raises(ValueError, match="noise has 1 entries"):
            G.synthesis(ws, noise=zeros[:1])


def test_bench_train_times_full_steps():
    import os

    from stylenas.train import bench

    nvlabs = os.environ.get("STYLENAS_NVLABS")
    result = bench.run(torch.device("cpu"), resolution=8, cfg="tiny", batch=4, steps=2, nvlabs=nvlabs,
                       log=lambda line: None)
    assert result["ours_s_per_kimg"] > 0 and result["batch"] == 4 and result["resolution"] == 8
    if nvlabs:
        assert result["speedup_vs_nvlabs"] == pytest.approx(result["nvlabs_s_per_kimg"] / result["ours_s_per_kimg"])
    with pytest.raises(bench.BenchError, match="--nvlabs /nonexistent: not a stylegan2-ada-pytorch checkout"):
        bench.run(torch.device("cpu"), resolution=8, cfg="tiny", batch=4, steps=1, nvlabs="/nonexistent",
                  log=lambda line: None)


@pytest.mark.parametrize("precision", ["bf16"])
def test_reduced_precision_on_the_top_resolutions(precision):
    """--fp16-res: the highest resolutions compute in bfloat16 (on the CPU here), parameters and
    the image sum stay float32, the result is close to float32's, and a training step stays finite."""
    full = tiny_config(resolution=16)
    half = tiny_config(resolution=16, fp16_res=2, precision=precision, conv_clamp=256)
    torch.manual_seed(0)
    G32, D32 = build_networks(Genotype.original(16), full)
    G16, D16 = build_networks(Genotype.original(16), half)
    G16.load_state_dict(G32.state_dict()), D16.load_state_dict(D32.state_dict())
    assert G16.synthesis.fp16_resolution == 8 and D16.fp16_resolution == 8
    dtypes = []
    hook = G16.synthesis.blocks.b16.conv1.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    z = torch.randn(4, 8)
    with torch.no_grad():
        a, b = G32(z, noise_mode="const"), G16(z, noise_mode="const")
        assert b.dtype == torch.float32 and dtypes == [torch.bfloat16]
        assert (a - b).abs().max() < 0.05 * a.abs().max()
        assert D16(a).dtype == torch.float32 and torch.allclose(D16(a), D32(a), rtol=0.05, atol=0.05)
    hook.remove()
    trainer = StyleGAN2Trainer(G16, D16, half, Dist())
    trainer.step(torch.rand(4, 3, 16, 16) * 2 - 1)
    assert trainer.nan_count == 0 and all(p.dtype == torch.float32 for p in trainer.G.parameters())


def test_a_nan_gradient_is_zeroed_counted_and_logged():
    config = tiny_config(pl_weight=0.0)
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(8), config), config, Dist())
    bias = trainer.D.out.bias
    bias.register_hook(lambda grad: torch.full_like(grad, float("nan")))  # every D phase: 1 NaN entry
    before = bias.detach().clone()
    trainer.step(torch.rand(4, 3, 8, 8) * 2 - 1)  # step 0: Dmain and Dreg (R1 gives bias a zero gradient)
    assert int(trainer.nan_count) == 2 and trainer.state_dict()["counters"]["nan_count"] == 2
    assert torch.isfinite(bias).all() and torch.equal(bias, before)  # zero gradients: Adam's steps are 0
    assert trainer.stats.means(Dist())["nan_D"] > 0


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_steps_on_a_gpu(precision):
    """On a GPU: reduced precision on the top resolutions with conv clamping (the kernels when
    built), path length and R1 included, stays finite and D starts to separate the data."""
    device = torch.device("cuda")
    config = tiny_config(resolution=16, fp16_res=2, precision=precision, conv_clamp=256, pl_weight=2.0, gamma=0.01)
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(16), config), config, Dist(device=device))
    reals = (torch.rand(32, 3, 16, 16, device=device) * 0.2 + torch.linspace(-0.9, 0.9, 16, device=device))
    for step in range(16):
        trainer.step(reals[(step * 4) % 32:(step * 4) % 32 + 4])
    stats = trainer.stats.means(Dist(device=device))
    assert int(trainer.nan_count) == 0 and all(torch.isfinite(p).all() for p in trainer.G.parameters())
    assert stats["D_accuracy"] > 0.5 and math.isfinite(stats["pl_length"])


# ------------------------------------------------------------------------------ gradient accumulation

def merged(rounds):
    """One round holding the rows of several (the same latents, noise and crossover)."""
    cat = lambda xs: None if xs[0] is None else torch.cat(xs)  # noqa: E731
    assert len({r.cutoff for r in rounds}) == 1
    return RoundInputs(z=cat([r.z for r in rounds]), z2=cat([r.z2 for r in rounds]), cutoff=rounds[0].cutoff,
                       noise=[cat(list(layer)) for layer in zip(*[r.noise for r in rounds])],
                       pl_noise=cat([r.pl_noise for r in rounds]))


def test_batch_gpu_rounds_equal_one_big_batch():
    """--batch-gpu 4 with batch 8 runs each phase in two rounds whose gradients add up, as NVlabs'
    training loop (each round's loss is a mean, so two rounds give twice the mean gradient of the whole
    batch); Adam does not see the factor, so the networks after two steps (R1 included) are those of
    one round of 8 on the same latents, noise and reals. Style mixing, minibatch-stddev groups and the
    path-length mean work per round in NVlabs, so they are off here."""
    def trainer(batch_gpu):
        config = tiny_config(batch=8, batch_gpu=batch_gpu, mbstd_group=1, mixing=0.0, pl_weight=0.0, gamma=1.0,
                             adam_eps=1e-20)  # Adam's eps is the one place the factor 2 would show
        torch.manual_seed(0)
        t = StyleGAN2Trainer(*build_networks(Genotype.original(8), config), config, Dist())
        t.grads, update = [], t._update
        t._update = lambda module, opt: (t.grads.append([p.grad.clone() for p in module.parameters()]),
                                         update(module, opt))[1]
        return t

    rounds, whole = trainer(4), trainer(8)
    assert rounds.rounds == 2 and whole.rounds == 1
    reals = torch.rand(2, 8, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    for step in range(2):
        inputs = {phase: rounds.draw(step, phase) for phase in ("Gmain", "Dmain")}
        rounds.step(reals[step], inputs)
        whole.step(reals[step], {phase: [merged(r)] for phase, r in inputs.items()})
    assert len(rounds.grads) == len(whole.grads) == 5  # Gmain, Dmain, Dreg; Gmain, Dmain
    for a, b in zip(rounds.grads, whole.grads):
        for ga, gb in zip(a, b):
            assert torch.allclose(ga, 2 * gb, rtol=1e-4, atol=1e-7)
    for net in ("G", "D", "G_ema"):
        for (name, a), b in zip(getattr(rounds, net).state_dict().items(), getattr(whole, net).state_dict().values()):
            if not name.endswith("w_avg"):  # tracked per round, as NVlabs' mapping does per call
                assert torch.allclose(a, b, atol=1e-5), (net, name, (a - b).abs().max())
    with pytest.raises(TrainError, match="--batch-gpu 3 must divide the per-process batch"):
        StyleGAN2Trainer(*build_networks(Genotype.original(8), tiny_config(batch=8, batch_gpu=3)),
                         tiny_config(batch=8, batch_gpu=3), Dist())


def test_paper_preset_is_config_f_without_path_length():
    """alphaGAN, supplementary ("Experiments on StyleGAN2 search space"): "config-f ... we abandon the
    regularization term", mini-batch 8 on 4 GPUs (CelebA, church) or 4 on 8 GPUs (FFHQ): 32 either way
    read per GPU. NVlabs' ``stylegan2`` cfg is config-f; at 256 px the networks have config-f's
    parameter counts (NVlabs' networks, tests/test_networks.py)."""
    for resolution in (256, 1024):
        paper, config_f = resolve_config("paper", resolution), resolve_config("stylegan2", resolution)
        assert paper.pl_weight == 0 and config_f.pl_weight == 2
        assert paper.batch == 8 * 4 == 4 * 8
        same = ("batch", "mbstd_group", "channel_base", "channel_max", "lr", "gamma", "ema_kimg", "ema_rampup",
                "mixing", "g_reg_interval", "d_reg_interval", "mapping_layers", "z_dim", "w_dim")
        assert {k: getattr(paper, k) for k in same} == {k: getattr(config_f, k) for k in same}
    G, D = build_networks(Genotype.original(256), resolve_config("paper", 256))
    assert (sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())) == (30034338, 28864129)
    # --pl-weight 0 keeps G's lazy correction (NVlabs' cifar config: pl_weight 0, G_reg_interval 4)
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(8), tiny_config(pl_weight=0.0)),
                               tiny_config(pl_weight=0.0), Dist())
    assert trainer.G_opt.param_groups[0]["lr"] == pytest.approx(0.0025 * 4 / 5)
