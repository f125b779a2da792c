"""Retraining a conventional genotype (``stylenas train-conventional``, ``scripts/train_conventional.py``).

The recipe of AutoGAN's and alphaGAN's retraining (alphaGAN appendix .1.1): hinge loss, D batch
64 and G batch 128, n_critic 5 (one G step per 5 D steps), Adam 2e-4 with betas (0, 0.9)
((0.5, 0.9) at 48 px, STL-10, as alphaGAN's repository), a constant learning rate as both authors'
commands run it (they never pass --lr_decay; ``--lr-schedule linear`` decays it linearly to 0 over
the run, their LinearLrDecay), an EMA of G's weights (0.999 per G step), gf 256, df 128, latent
128, xavier init; 50k G steps at 32 px (CIFAR-10), 80k at 48 px (STL-10). AGAN genotypes retrain
at 256 channels in G and D (AGAN section 4.3: the search's 128 doubled). ``DIR/config.json``
records every setting with its source (``RETRAIN_SOURCES`` and the methods' own tables). DEGAS genotypes
default to CT-GAN's recipe, as the paper retrains them: WGAN-GP + the consistency term against
CT-GAN's critic (dropout, no spectral norm: ``conventional.spaces.ctgan``) and CT-GAN's 100k
iterations (``CT_gan_cifar_resnet.py`` line 42); its lr 2e-4 with linear decay, Adam (0, 0.9),
n_critic 5, D batch 64 and G batch 128 (lines 40-50, 333) are the preset's. ``--loss`` chooses.

Output folder: ``checkpoint.pt`` (everything to resume, rewritten atomically every ``--snap``
G steps), ``network-snapshot-<step>.pt``, ``best.pt`` (best FID when ``--metrics`` has fid),
``log.jsonl``, ``losses.png``, ``samples/step<step>.png``. Batches and latents depend only on
(seed, step), the other random state is in the checkpoint: a resumed run (also after SIGKILL)
continues exactly. Under ``torchrun`` each process takes its rows of every global batch and the
gradients are averaged; BatchNorm statistics are per process, as under DDP.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import torch

from ..config_sources import Entry, choice, code
from ..runs import resuming
from ..train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from ..train.distributed import init_distributed
from ..train.runlog import KeepBest, Progress, RunLog, plot_series, save_image_grid, snapshot_name
from .genotypes import ConventionalGenotype, load_genotype
from .losses import LOSSES, d_loss, g_loss
from .networks import build_generator, build_networks
from .sources import OPERATIONAL, TINY, write_run_config

CHECKPOINT = "checkpoint.pt"
PRESETS = {
    # the papers' retraining; steps by resolution (CIFAR-10 32 px: 50k, STL-10 48 px: 80k)
    "paper": {"g_batch": 128, "d_batch": 64, "n_critic": 5, "gf_dim": 256, "df_dim": 128, "latent_dim": 128,
              "steps": None, "snap": 2500, "sample_every": 1000, "log_every": 100, "metric_num": 50000},
    # CPU tests and the demo
    "tiny": {"g_batch": 8, "d_batch": 4, "n_critic": 2, "gf_dim": 8, "df_dim": 8, "latent_dim": 16,
             "steps": 20, "snap": 10, "sample_every": 10, "log_every": 5, "metric_num": 64},
}
PAPER_STEPS = {32: 50_000, 48: 80_000}
LR_SCHEDULES = ("constant", "linear")
# the paper preset's settings that depend on the searcher whose genotype is retrained (sources in
# each method's RETRAIN_SOURCES); methods not listed decay the learning rate linearly
METHOD_DEFAULTS = {
    "autogan": {"lr_schedule": "constant"},  # exps/autogan_cifar10_{a,b,c}.sh pass no --lr_decay
    "alphagan_conv": {"lr_schedule": "constant"},  # README's train_geno_gan.py commands: no --lr_decay
    "agan": {"lr_schedule": "constant", "gf_dim": 256, "df_dim": 256},  # section 4.3 (channels doubled)
}
CTGAN_STEPS = 100_000  # CT-GAN's ITERS (G iterations), CT_gan_cifar_resnet.py line 42
EMA_DECAY = 0.999


class TrainError(RuntimeError):
    """A run that cannot start: bad option, data, genotype or checkpoint."""


@dataclass
class TrainConfig:
    genotype: str
    data: str
    outdir: str
    preset: str = "paper"
    steps: int | None = None
    loss: str | None = None
    resolution: int | None = None
    lr: float = 2e-4
    betas: tuple | None = None
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    init: str | None = None  # G and D weights to start from (e.g. final.pt of a DGGAN search)
    lr_schedule: str | None = None  # constant | linear [default: the method's, METHOD_DEFAULTS]
    gf_dim: int | None = None  # [default: the preset's, or the method's]
    df_dim: int | None = None
    snap: int | None = None
    metrics: tuple = ()
    fid_stats: str | None = None
    metric_num: int | None = None
    inception: str | None = None
    overrides: dict = field(default_factory=dict)  # preset values replaced (e.g. g_batch)

    # settings a --resume must agree with
    STRUCTURAL = ("genotype_record", "resolution", "loss", "seed", "g_batch", "d_batch", "n_critic", "gf_dim",
                  "df_dim", "latent_dim", "lr", "betas", "steps", "images", "lr_schedule")
    LEGACY = {"lr_schedule": "linear"}  # what a checkpoint written before the setting existed ran with


def batch_indices(length, batch, seed, step):
    """Indices of global batch ``step``: positions step*B .. step*B + B - 1 of an endless stream of
    seeded permutations (epoch e shuffled by seed + e), so batches depend on (seed, step) only."""
    out, perms = [], {}
    for position in range(step * batch, (step + 1) * batch):
        epoch = position // length
        if epoch not in perms:
            perms[epoch] = torch.randperm(length, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        out.append(int(perms[epoch][position % length]))
    return out


def latents(seed, step, stream, n, dim, device):
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step * 9_973 + stream * 7_919_191) % (2 ** 63 - 1))
    return torch.randn(n, dim, generator=gen).to(device)


def settings_of(config, dataset_len, resolution, genotype):
    method = METHOD_DEFAULTS.get(genotype.search_space, {})
    preset = {**PRESETS[config.preset], **(method if config.preset == "paper" else {}), **config.overrides}
    preset.update({k: v for k, v in (("gf_dim", config.gf_dim), ("df_dim", config.df_dim)) if v is not None})
    lr_schedule = config.lr_schedule or method.get("lr_schedule", "linear")
    if lr_schedule not in LR_SCHEDULES:
        raise TrainError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
    preset.pop("lr_schedule", None)
    if genotype.search_space == "dggan":  # a grown ProgGAN fixes its latent size; the paper's loss is WGAN-GP
        preset["latent_dim"] = genotype.body["latent_dim"]
    loss = config.loss or {"degas": "ctgan", "dggan": "wgan-gp"}.get(genotype.search_space, "hinge")
    if loss not in LOSSES:
        raise TrainError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "ctgan" and genotype.search_space in ("agan", "dggan"):  # they bring their own D
        raise TrainError(f"--loss ctgan trains against CT-GAN's critic; a {genotype.search_space} genotype brings its "
                         f"own discriminator: use --loss hinge or wgan-gp")
    steps = config.steps or preset["steps"] or (CTGAN_STEPS if loss == "ctgan" else PAPER_STEPS.get(resolution, 50_000))
    betas = tuple(config.betas) if config.betas else ((0.5, 0.9) if resolution == 48 else (0.0, 0.9))
    return {**preset, "steps": steps, "loss": loss, "betas": list(betas), "lr": config.lr, "lr_schedule": lr_schedule,
            "seed": config.seed,
            "resolution": resolution, "images": dataset_len, "genotype_record": genotype.to_dict(),
            "snap": config.snap or preset["snap"], "metric_num": config.metric_num or preset["metric_num"],
            "metrics": list(config.metrics)}


AUTOGAN_SH = "VITA-Group/AutoGAN exps/autogan_cifar10_a.sh"
ALPHAGAN_README = "yuesongtian/AlphaGAN README.md, the train_geno_gan.py commands (lines 41-49)"
# sources of the retraining settings, as AutoGAN's and alphaGAN's retraining (which agree); a method's
# own table (its RETRAIN_SOURCES, given to run_training by commands.retrain_sources) amends it
RETRAIN_SOURCES = {
    "genotype": Entry(choice("--genotype: a search's genotype.json or a published name")),
    "search_space": Entry(choice("the genotype's search space, which picks the method's defaults and sources")),
    "g_batch": Entry(code(f"{AUTOGAN_SH}: -gen_bs 128; {ALPHAGAN_README}: -gen_bs 128"), {"tiny": TINY}),
    "d_batch": Entry(code(f"{AUTOGAN_SH}: -dis_bs 64; {ALPHAGAN_README}: -dis_bs 64"), {"tiny": TINY}),
    "n_critic": Entry(code(f"{AUTOGAN_SH}: --n_critic 5; {ALPHAGAN_README}: --n_critic 5"), {"tiny": TINY}),
    "gf_dim": Entry(code(f"{AUTOGAN_SH}: --gf_dim 256; {ALPHAGAN_README}: --gf_dim 256"), {"tiny": TINY}),
    "df_dim": Entry(code(f"{AUTOGAN_SH}: --df_dim 128; {ALPHAGAN_README}: --df_dim 128"), {"tiny": TINY}),
    "latent_dim": Entry(code(f"{AUTOGAN_SH}: --latent_dim 128; {ALPHAGAN_README}: --latent_dim 128"),
                        {"tiny": TINY}),
    "steps": Entry(code(f"--max_iter: 50000 G steps at 32 px ({AUTOGAN_SH}; {ALPHAGAN_README}), 80000 at 48 px "
                        "(the README's STL-10 commands)"), {"tiny": TINY}),
    "loss": Entry(code("the hinge loss of AutoGAN's functions.py train() (ReLU(1 - D(x)) + ReLU(1 + D(G(z))), "
                       "G: -D(G(z))), which alphaGAN's reuses")),
    "lr": Entry(code(f"{AUTOGAN_SH}: --g_lr 0.0002 --d_lr 0.0002; {ALPHAGAN_README}: --g_lr 2e-4 --d_lr 2e-4")),
    "betas": Entry(code(f"{AUTOGAN_SH}: --beta1 0.0 --beta2 0.9 (32 px); {ALPHAGAN_README}: --beta1 0.5 --beta2 0.9 "
                        "for STL-10 (48 px)")),
    "lr_schedule": Entry(choice("linear decay to 0 over the run (AutoGAN's functions.py LinearLrDecay) for methods "
                                "whose sources name no schedule; --lr-schedule constant keeps the rate")),
    "ema_decay": Entry(code("AutoGAN functions.py line 219 (alphaGAN functions.py line 536): "
                            "avg_p.mul_(0.999).add_(0.001, p), once per G step")),
    "metric_num": Entry(code("AutoGAN cfg.py line 125 (alphaGAN cfg_train.py line 193): --num_eval_imgs 50000"),
                        {"tiny": TINY}),
    "metrics": Entry(choice("--metrics: IS / FID of G_ema at every snapshot (none by default)")),
    "snap": Entry(OPERATIONAL, {"tiny": TINY}),
    "sample_every": Entry(OPERATIONAL, {"tiny": TINY}),
    "log_every": Entry(OPERATIONAL, {"tiny": TINY}),
    "resolution": Entry(choice("the largest size stored in --data, or --resolution (32: CIFAR-10, 48: STL-10)")),
    "images": Entry(choice("the number of training images in --data")),
    "seed": Entry(choice("--seed, default 0")),
    "data": Entry(choice("--data")),
    "outdir": Entry(OPERATIONAL),
    "device": Entry(OPERATIONAL),
    "resume": Entry(OPERATIONAL),
    "init": Entry(choice("--init: G and D weights to start from (none: the authors' xavier initialisation)")),
    "fid_stats": Entry(choice("--fid-stats: the training set's statistics for --metrics fid")),
    "inception": Entry(choice("--inception: the FID Inception weights file")),
    "processes": Entry(choice("torchrun processes; each takes its rows of every global batch (same result as one)")),
}
# command-line options of train-conventional behind settings (a value they gave is marked so)
OPTIONS = {"steps": "--steps", "loss": "--loss", "betas": "--betas", "lr_schedule": "--lr-schedule",
           "gf_dim": "--gf-dim", "df_dim": "--df-dim", "snap": "--snap", "metric_num": "--metric-num"}


def run_values(config, settings, genotype, processes):
    """The values config.json records: every resolved setting of the run (its table's names)."""
    values = {"genotype": str(config.genotype), "search_space": genotype.search_space,
              **{k: v for k, v in settings.items() if k != "genotype_record"}, "ema_decay": EMA_DECAY,
              "data": str(config.data), "outdir": str(config.outdir), "device": config.device,
              "resume": config.resume, "init": config.init, "fid_stats": config.fid_stats,
              "inception": config.inception, "processes": processes}
    return values


def given_options(config):
    given = {name: option for name, option in OPTIONS.items() if getattr(config, name, None) is not None}
    given.update({name: f"--{name.replace('_', '-')}" for name in config.overrides})
    return given


def learning_rate(settings, d_step, total_d):
    """The learning rate of D step ``d_step`` (and of the G step it ends): constant, or linear decay
    to 0 over the run's ``total_d`` D steps."""
    if settings.get("lr_schedule", "linear") == "constant":
        return settings["lr"]
    return settings["lr"] * (1 - d_step / total_d)


@torch.no_grad()
def update_ema(G_ema, G, decay=EMA_DECAY):
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p, 1 - decay)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def generator_from_checkpoint(checkpoint, device="cpu"):
    """(G_ema on ``device``, info) of a conventional checkpoint dict (``stylenas.train.load_generator``)."""
    genotype = ConventionalGenotype.from_dict(checkpoint["genotype"], where="checkpoint genotype")
    s = checkpoint["config"]
    G = build_generator(genotype, s["resolution"], s["gf_dim"], s["latent_dim"])
    G.load_state_dict(checkpoint["G_ema"])
    counters = checkpoint.get("counters", {})
    return G.to(device), {"resolution": s["resolution"], "z_dim": s["latent_dim"], "step": counters.get("step"),
                          "kimg": counters.get("kimg"), "genotype": checkpoint["genotype"], "config": s}


def open_images(path, resolution, error=TrainError):
    """The LMDB's images at ``resolution``; a bad LMDB raises ``error`` (the caller's one-line error
    class) with the data's message."""
    from ..datasets import DatasetError, LMDBImages

    try:
        return LMDBImages(path, resolution=resolution)
    except DatasetError as problem:
        raise error(str(problem)) from None


class MetricEvaluator:
    """IS (10 splits) and FID (against ``fid_stats``) of ``num`` samples of a generator, through
    the FID Inception network (``net(uint8 images) -> (features, logits)``)."""

    def __init__(self, metrics, num, fid_stats=None, inception=None, device="cpu", net=None, batch=50):
        from .. import metrics as m

        self.metrics, self.num, self.device, self.batch = tuple(metrics), num, device, batch
        if "fid" in self.metrics and not fid_stats:
            raise TrainError("--metrics fid needs --fid-stats STATS.npz (e.g. `stylenas fid DATA.lmdb --save-stats "
                             "STATS.npz`: the training set's statistics, as the papers)")
        if "is" in self.metrics and num < 10:
            raise TrainError(f"--metric-num {num}: the Inception Score takes 10 splits, so at least 10 samples")
        self.ref = m.load_stats(fid_stats) if fid_stats else None
        self.net = net if net is not None else m.InceptionV3FID(weights=inception).to(device).eval()

    @torch.no_grad()
    def __call__(self, G, latent_dim, seed):
        from .. import metrics as m

        stats, logits, was_training = m.FeatureStats(), [], G.training
        G.eval()
        for start in range(0, self.num, self.batch):
            n = min(self.batch, self.num - start)
            images = G(latents(seed, start, 9, n, latent_dim, self.device))
            out = self.net(m.to_uint8(images))
            # InceptionOutput: the original IS uses the logits without the fc bias
            features, logit = (out.features, out.logits_unbiased) if hasattr(out, "logits_unbiased") else out
            stats.update(features)
            logits.append(logit.cpu())
        G.train(was_training)
        result = {}
        if "is" in self.metrics:
            result["is"], result["is_std"] = (float(v) for v in m.inception_score(torch.cat(logits), splits=10))
        if "fid" in self.metrics:
            result["fid"] = float(m.frechet_distance(*stats.stats(), *self.ref))
        return result


def run_training(config: TrainConfig, dataset=None, log=lambda line: click.echo(line, err=True), stop_at=None,
                 evaluator=None, stop=None, sources=None):
    """Train (or resume); returns the final counters. ``dataset`` (items uint8 [3, R, R]) replaces
    the LMDB; ``stop_at`` ends the run after that many G steps as if killed right after a
    checkpoint (tests of exact resume); ``stop`` (a ``stylenas.runs.StopSignals``): on SIGINT/SIGTERM
    the run checkpoints after the current G step and raises ``stylenas.runs.Interrupted``;
    ``sources(search_space)`` gives the method's sources table for config.json (None or a None
    result: ``RETRAIN_SOURCES``)."""
    if config.preset not in PRESETS:
        raise TrainError(f"--preset must be one of {', '.join(PRESETS)}, got {config.preset!r}")
    try:
        dist = init_distributed(config.device)
    except ValueError as error:
        raise TrainError(str(error)) from None
    device, outdir = dist.device, Path(config.outdir)
    config = replace(config, resume=resuming(config.resume, outdir / CHECKPOINT))  # also after a torchrun restart
    try:
        genotype = load_genotype(config.genotype)
    except ValueError as error:
        raise TrainError(str(error)) from None
    if dataset is None:
        dataset = open_images(config.data, config.resolution)
    resolution = int(dataset[0].shape[-1])
    if resolution % 8:
        raise TrainError(f"{config.data}: {resolution}px images; the conventional generators need a multiple "
                         f"of 8 (32 for CIFAR-10, 48 for STL-10)")
    s = settings_of(config, len(dataset), resolution, genotype)
    g_local = dist.local_batch(s["g_batch"], "G batch")
    d_local = dist.local_batch(s["d_batch"], "D batch")
    del g_local, d_local  # checked for divisibility; batches are sharded from the global ones

    torch.manual_seed(s["seed"])
    G, D = build_networks(genotype, resolution, s["gf_dim"], s["df_dim"], s["latent_dim"],
                          discriminator="ctgan" if s["loss"] == "ctgan" else "sngan")
    if config.init and not config.resume:
        load_initial_weights(config.init, G, D)
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G_opt = torch.optim.Adam(G.parameters(), lr=s["lr"], betas=tuple(s["betas"]))
    D_opt = torch.optim.Adam(D.parameters(), lr=s["lr"], betas=tuple(s["betas"]))
    best = KeepBest(outdir / "best.pt", "fid", mode="min")
    counters = {"step": 0, "d_step": 0, "kimg": 0.0}
    ckpt_path = outdir / CHECKPOINT

    if config.resume:
        try:
            state = load_checkpoint(ckpt_path, map_location=device, kind="conventional")
        except ValueError as error:
            raise TrainError(f"--resume: {error}") from None
        mismatched = [k for k in TrainConfig.STRUCTURAL
                      if state["config"].get(k, TrainConfig.LEGACY.get(k)) != s.get(k)]
        if mismatched:
            raise TrainError(f"--resume: {ckpt_path} was written with other settings: " + ", ".join(
                f"{k} (was {_short(state['config'].get(k))}, now {_short(s.get(k))})" for k in mismatched))
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"]), G_ema.load_state_dict(state["G_ema"])
        G_opt.load_state_dict(state["G_opt"]), D_opt.load_state_dict(state["D_opt"])
        counters = dict(state["counters"])
        best.load_state_dict(state.get("best", {}))
        rngs = state["rng"]
        if len(rngs) != dist.world_size:
            log(f"note: checkpoint written by {len(rngs)} processes, resuming on {dist.world_size}: "
                f"dropout/penalty random draws differ from an uninterrupted run")
        restore_rng(rngs[dist.rank % len(rngs)])
        if dist.is_main:
            log(f"resumed {outdir} at G step {counters['step']}")
    elif ckpt_path.exists():
        raise TrainError(f"{outdir} already holds a run ({CHECKPOINT}); use --resume or another --outdir")

    if evaluator is None and s["metrics"]:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # resume stays exact
            evaluator = MetricEvaluator(s["metrics"], s["metric_num"], config.fid_stats, config.inception, device)
    runlog = RunLog(outdir / "log.jsonl", resume_at=counters["step"] if config.resume else None,
                    key="step") if dist.is_main else None
    if dist.is_main:
        (outdir / "samples").mkdir(parents=True, exist_ok=True)
        write_run_config(outdir, run_values(config, s, genotype, dist.world_size),
                         (sources and sources(genotype.search_space)) or RETRAIN_SOURCES, preset=config.preset,
                         from_command_line=given_options(config))
        log(f"training {genotype.search_space} genotype ({_describe(config.genotype)}) at {resolution}px on {device} "
            f"x{dist.world_size}: {s['steps']} G steps, {s['loss']} loss, G batch {s['g_batch']}, D batch "
            f"{s['d_batch']}, n_critic {s['n_critic']}, gf {s['gf_dim']}, df {s['df_dim']}")
    fixed_z = latents(s["seed"], 0, 8, 64, s["latent_dim"], device)
    total_d = s["steps"] * s["n_critic"]

    def checkpoint_state():
        return {"kind": "conventional", "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                "G_opt": G_opt.state_dict(), "D_opt": D_opt.state_dict(), "counters": dict(counters),
                "rng": dist.gather_objects(capture_rng()), "genotype": genotype.to_dict(), "config": s,
                "best": best.state_dict()}

    progress = Progress(s["steps"], unit="step", start=counters["step"])
    window, tic = [], time.perf_counter()
    G.train(), D.train()
    while counters["step"] < s["steps"]:
        d_step = counters["d_step"]
        for group in (*G_opt.param_groups, *D_opt.param_groups):
            group["lr"] = learning_rate(s, d_step, total_d)
        index = dist.shard(batch_indices(len(dataset), s["d_batch"], s["seed"], d_step))
        real = torch.stack([dataset[i] for i in index]).to(device).float() / 127.5 - 1
        z = dist.shard(latents(s["seed"], d_step, 1, s["d_batch"], s["latent_dim"], device))
        with torch.no_grad():
            fake = G(z)
        loss, stats = d_loss(s["loss"], D, real, fake)
        D_opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.sync_gradients(D.parameters())
        D_opt.step()
        counters["d_step"] += 1
        if counters["d_step"] % s["n_critic"]:
            continue

        z = dist.shard(latents(s["seed"], d_step, 2, s["g_batch"], s["latent_dim"], device))
        D.requires_grad_(False)
        loss_g = g_loss(D, G(z))
        G_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        D.requires_grad_(True)
        dist.sync_gradients(G.parameters())
        G_opt.step()
        update_ema(G_ema, G)
        counters["step"] += 1
        counters["kimg"] = counters["step"] * s["g_batch"] / 1000
        step = counters["step"]
        window.append({**stats, "g_loss": loss_g.item()})

        if step % s["log_every"] == 0 or step == s["steps"]:
            record = {"step": step, "kimg": counters["kimg"], "lr": learning_rate(s, counters["d_step"] - 1, total_d),
                      "seconds_per_step": (time.perf_counter() - tic) / len(window)}
            for key in window[0]:
                record[key] = sum(w[key] for w in window) / len(window)
            window, tic = [], time.perf_counter()
            if dist.is_main:
                runlog.write(record)
                log(progress.line(step, d_loss=record["d_loss"], g_loss=record["g_loss"]))
        if dist.is_main and (step % s["sample_every"] == 0 or step == s["steps"]):
            with torch.no_grad():
                save_image_grid(G_ema(fixed_z), outdir / "samples" / f"step{step:06d}.png", nrow=8)
        stopping = stop is not None and stop.requested(dist) and step < s["steps"]  # a signal: checkpoint, exit
        if step % s["snap"] == 0 or step == s["steps"] or step == stop_at or stopping:
            metrics = evaluator(G_ema, s["latent_dim"], s["seed"]) if evaluator is not None and dist.is_main else {}
            state = checkpoint_state()  # every rank takes part in gathering the RNG states
            if dist.is_main:
                if metrics:
                    runlog.write({"step": step, "kimg": counters["kimg"], **metrics})
                    log(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
                    if best.improves(metrics.get("fid")):
                        best.best = metrics["fid"]
                        state["best"] = best.state_dict()
                        save_checkpoint(state, best.path)
                save_checkpoint(state, outdir / snapshot_name(step))
                save_checkpoint(state, ckpt_path)
                plot_series(runlog.records(), ["d_loss", "g_loss"], outdir / "losses.png", x_key="step")
            dist.barrier()
        if stopping:
            stop.interrupt(ckpt_path)
        if step == stop_at:
            break
    if runlog is not None:
        runlog.close()
    dist.close()
    return counters


def load_initial_weights(path, G, D):
    """Start G and D from the ``"G"`` and ``"D"`` state dicts in ``path`` (a DGGAN search's final.pt,
    or a checkpoint of another run of the same genotype)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
    except FileNotFoundError:
        raise TrainError(f"--init {path}: file not found") from None
    except Exception as error:  # noqa: BLE001 - any unusable file gets the same one-line error
        raise TrainError(f"--init {path}: not G and D weights of this genotype "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None


def _short(value):
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _describe(genotype):
    return str(genotype)
