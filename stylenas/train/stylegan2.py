"""Retraining a StyleGAN2 genotype with StyleGAN2's recipe (Karras et al. 2020; the alphaGAN paper
retrains its genotypes this way, supplementary material), written after NVlabs
stylegan2-ada-pytorch's ``training_loop.py`` / ``loss.py``, with its adaptive discriminator augmentation
(``augment.py``: every image D sees, real or fake, in every phase, passes ``run_D``; the R1 gradient is
taken through the augmentation, as NVlabs does; ``--aug ada`` adjusts p every 4 steps).

One training step on a global batch of B images (B over all processes), as NVlabs'
``training_loop.py`` runs its phases over ``StyleGAN2Loss.accumulate_gradients``:
  1. Gmain: G minimises softplus(-D(G(z))), with style mixing (probability 0.9).
  2. Greg (steps 0, 4, 8, ...): path-length penalty on B / 2 latents, weight 2, gain 4.
  3. Dmain: D minimises softplus(D(G(z))) + softplus(-D(x)).
  4. Dreg (steps 0, 16, 32, ...): R1, gamma / 2 * ||grad D(x)||^2, gain 16.
  Each phase is one Adam update (lr and betas corrected for lazy regularisation, whatever the
  regularisers' weights, as NVlabs); gradients are averaged over processes, NaN entries become 0 and
  infinities +-1e5 (counted), then the EMA generator follows. ``--batch-gpu b`` splits each
  process's rows into rounds of b whose gradients add up (NVlabs' accumulation: the per-round
  losses are means, so R rounds give R times a mean gradient, which Adam does not see).
  ``tests/test_nvlabs_loss.py`` pins every phase's gradients and the schedule to values produced by
  NVlabs' own code.

Determinism: every random draw of step k (latents, mixing, noise inputs, path-length noise, data
order and flips, augmentations) comes from generators seeded by (seed, k, phase) and is drawn for a
whole global round (all processes' round r together), each process keeping its rows
(``Dist.shard``). Hence a run resumed from any checkpoint retraces the uninterrupted run bit for bit
on the CPU, and N processes with total batch B and ``--batch-gpu b`` train the networks of 1 process
with batch B and batch-gpu N b (to float rounding of the all-reduces). Still different:
minibatch-stddev groups when the per-process batch is not a multiple of the group. The w_avg of the mapping
network and the path-length mean are tracked with the mean of the global round (all-reduced; the
path-length mean keeps its graph through the all-reduce), unlike stylegan2-ada-pytorch where each
GPU keeps its own.

Gradients are averaged by one flat all-reduce per phase after backward (as stylegan3's training
loop does) rather than by DistributedDataParallel hooks: the phases run two discriminator
forwards per update and double backward passes (R1, path length), which DDP's hooks handle only
with extra care, and the explicit all-reduce is deterministic.

Dynamic W: the synthesis network reads, per latent slot, one of the mapping outputs W_1..W_8
(the genotype's choice). Style mixing replaces the slot's source from the crossover slot on: every
layer after it takes its chosen W_i from the second latent's mapping outputs. Truncation lerps
each W_i toward its own running mean (``MappingNetwork.w_avg``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..nn.networks import Discriminator, Generator
from ..search.genotype import Genotype
from .config import TrainConfig
from .augment import AdaController, AugmentPipe
from .data import stream_generator
from .loss import (d_logistic_loss, ema_beta, g_nonsaturating_loss, lazy_regularisation, path_length_noise,
                   path_lengths, r1_penalty, sanitise_gradients, update_ema)

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
# one random stream per phase of a step
STREAMS = {"Gmain": 1, "Greg": 2, "Dmain": 3, "Dreg": 4}
CHOICES_STREAM = 100  # offset of the CPU streams of the mixing choices
AUGMENT_STREAM = 200  # + 2 * phase stream (+ 1 for reals): the augmentation draws of D's inputs


class TrainError(ValueError):
    """A run that cannot start or resume (bad data, genotype, checkpoint or option); one line."""


def build_networks(genotype: Genotype, config: TrainConfig):
    """(G, D) of ``genotype`` at the configuration's size (not the size it was searched at)."""
    if genotype.resolution != config.resolution:
        raise TrainError(f"the genotype is for {genotype.resolution} px, the training for {config.resolution} px")
    channels = dict(channel_base=config.channel_base, channel_max=config.channel_max, channel_mult=1.0,
                    num_fp16_res=config.fp16_res, fp16_dtype=PRECISIONS[config.precision])
    G = Generator(config.resolution, z_dim=config.z_dim, w_dim=config.w_dim, conv_clamp=config.conv_clamp,
                  mapping_layers=config.mapping_layers, **channels, **genotype.synthesis_kwargs())
    D = Discriminator(config.resolution, mbstd_group_size=config.mbstd_group, conv_clamp=config.conv_clamp, **channels)
    return G, D


def generator_from_checkpoint(state, device):
    """(G_ema, info) of a "stylegan2" checkpoint dict (``checkpoint.load_generator`` calls this)."""
    genotype = Genotype.from_dict(state["genotype"], where="checkpoint genotype")
    config = TrainConfig.from_dict(state["config"])
    G, _ = build_networks(genotype, config)
    G.load_state_dict(state["G_ema"])
    counters = state.get("counters", {})
    info = {"resolution": config.resolution, "z_dim": config.z_dim, "kimg": counters.get("kimg"),
            "step": counters.get("step"), "cfg": config.cfg, "genotype": genotype.to_dict(), "config": config.to_dict()}
    return G.to(device), info


def make_noise(synthesis, batch, generator, device):
    """Noise inputs of every conv layer for ``batch`` images (None for toRGB layers)."""
    noise = []
    for name, kind in synthesis.layout:
        if kind == "torgb":
            noise.append(None)
        else:
            res = int(name.split(".")[0][1:])
            noise.append(torch.randn([batch, 1, res, res], generator=generator, device=device))
    return noise


@dataclass
class StepStats:
    """Per-step values accumulated as tensors (no host sync per step) and averaged at a log line."""
    sums: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def add(self, name, value):
        value = value.detach().float().mean() if torch.is_tensor(value) else torch.tensor(float(value))
        self.sums[name] = self.sums.get(name, 0) + value
        self.counts[name] = self.counts.get(name, 0) + 1

    def means(self, dist):
        names = sorted(self.sums)
        if not names:
            return {}
        values = torch.stack([torch.as_tensor(self.sums[n], dtype=torch.float32).to(dist.device) / self.counts[n]
                              for n in names])
        dist.all_reduce_mean(values)
        self.sums, self.counts = {}, {}
        return dict(zip(names, values.tolist()))


@dataclass
class RoundInputs:
    """The random inputs of one round of one phase, this process's rows: latents ``z``, the style-mixing
    latents ``z2`` (None when mixing is off) and the first slot they feed (``cutoff``; ``num_ws``: no
    mixing), the noise inputs (``make_noise``) and, for the path-length phase, its image-shaped noise
    y (already divided by sqrt(H W)). Tests inject these to run NVlabs' draws through our phases."""
    z: torch.Tensor
    z2: torch.Tensor | None
    cutoff: int
    noise: list
    pl_noise: torch.Tensor | None = None


class StyleGAN2Trainer:
    """The networks, optimisers and counters of a run, and ``step(reals)``. ``reals`` are this
    process's rows of the global batch; ``dist`` is a ``distributed.Dist``."""

    def __init__(self, G, D, config: TrainConfig, dist):
        self.config, self.dist, self.device = config, dist, dist.device
        self.G, self.D = G.to(self.device).train(), D.to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # NVlabs corrects Adam for the lazy intervals whatever the regularisers' weights (its cifar
        # config keeps G's correction with pl_weight 0; a zero-weight phase steps nothing)
        g_lr, g_betas = lazy_regularisation(config.lr, config.adam_betas, config.g_reg_interval)
        d_lr, d_betas = lazy_regularisation(config.lr, config.adam_betas, config.d_reg_interval)
        self.G_opt = torch.optim.Adam(self.G.parameters(), lr=g_lr, betas=g_betas, eps=config.adam_eps)
        self.D_opt = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas, eps=config.adam_eps)
        self.pl_mean = torch.zeros([], device=self.device)
        self.step_index, self.nimg, self.nan_count = 0, 0, 0
        self.local_batch = dist.local_batch(config.batch)
        self.batch_gpu = config.batch_gpu or self.local_batch
        if self.local_batch % self.batch_gpu:
            raise TrainError(f"--batch-gpu {self.batch_gpu} must divide the per-process batch ({self.local_batch} = "
                             f"--batch {config.batch} / {dist.world_size} processes)")
        self.rounds = self.local_batch // self.batch_gpu
        self.pl_batch_gpu = self.batch_gpu // config.pl_batch_shrink  # NVlabs: per round, rounded down
        if config.pl_weight > 0 and self.pl_batch_gpu < 1:
            raise TrainError(f"the path-length batch per round (--batch-gpu {self.batch_gpu} / "
                             f"{config.pl_batch_shrink}) is empty: use a larger --batch-gpu or --pl-weight 0")
        self.stats = StepStats()
        # ADA (NVlabs' augment_pipe): every image D sees is augmented; with --aug ada, p follows D's signs
        self.augment_pipe, self.ada = None, None
        if config.aug != "noaug":
            self.augment_pipe = AugmentPipe.from_name(config.augpipe, p=config.augment_p).to(self.device)
            if config.aug == "ada":
                self.ada = AdaController(config.ada_target, config.ada_interval, config.ada_kimg, config.batch)

    # -------------------------------------------------------------------------------- randomness

    def generators(self, step, phase):
        """(device generator of the tensors, CPU generator of the mixing choices) of a step's phase:
        drawing the choices on the CPU needs no device synchronisation."""
        stream = STREAMS[phase]
        return (stream_generator(self.config.seed, step, stream, self.device),
                stream_generator(self.config.seed, step, stream + CHOICES_STREAM))

    def draw(self, step, phase):
        """The ``RoundInputs`` of every round of ``phase`` at ``step``. Round r of every process together
        is one global round (world_size * batch_gpu rows) drawn whole, each process keeping its rows,
        so the draws do not depend on the process count. Like NVlabs, mixing is decided per round and
        the path-length phase uses batch_gpu / pl_batch_shrink latents per round."""
        config, dist, device = self.config, self.dist, self.device
        generator, choices = self.generators(step, phase)
        rows = (self.pl_batch_gpu if phase == "Greg" else self.batch_gpu) * dist.world_size
        num_ws = self.G.synthesis.num_ws
        rounds = []
        for _ in range(self.rounds):
            z = dist.shard(torch.randn([rows, config.z_dim], generator=generator, device=device))
            z2, cutoff = None, num_ws
            if config.mixing > 0:
                z2 = dist.shard(torch.randn([rows, config.z_dim], generator=generator, device=device))
                mix = float(torch.rand([], generator=choices)) < config.mixing
                drawn = int(torch.randint(1, max(num_ws, 2), [], generator=choices))
                cutoff = drawn if mix else num_ws
            noise = [n if n is None else dist.shard(n) for n in make_noise(self.G.synthesis, rows, generator, device)]
            pl_noise = None
            if phase == "Greg":
                shape = [rows, self.G.synthesis.img_channels, config.resolution, config.resolution]
                pl_noise = dist.shard(path_length_noise(shape, generator, device))
            rounds.append(RoundInputs(z, z2, cutoff, noise, pl_noise))
        return rounds

    # -------------------------------------------------------------------------------- networks

    def _track_w_avg(self, ws):
        """Update the mapping network's running mean of every W_i with the global round's mean."""
        mapping = self.G.mapping
        mean = self.dist.all_reduce_mean(ws.detach().mean(0))
        with torch.no_grad():
            mapping.w_avg.copy_(mean.lerp(mapping.w_avg, mapping.w_avg_beta))

    def run_G(self, inputs: RoundInputs, track_w_avg=True):
        """(images, per-slot latents [n, num_ws, 8, w_dim]) of one round's inputs, with style mixing."""
        G = self.G
        ws = G.mapping(inputs.z, update_w_avg=False)
        if track_w_avg:
            self._track_w_avg(ws)
        num_ws = G.synthesis.num_ws
        slots = ws.unsqueeze(1).repeat(1, num_ws, 1, 1)
        if inputs.z2 is not None and inputs.cutoff < num_ws:
            ws2 = G.mapping(inputs.z2, update_w_avg=False)
            slots = torch.cat([slots[:, :inputs.cutoff], ws2.unsqueeze(1).expand(-1, num_ws - inputs.cutoff, -1, -1)],
                              dim=1)
        return G.synthesis(slots, noise=inputs.noise), slots

    def augment_generator(self, step, phase, kind):
        """The generator of the augmentation draws of ``phase``'s ``kind`` ("fakes" | "reals") at ``step``,
        drawn round by round for the global round (None without augmentation)."""
        if self.augment_pipe is None:
            return None
        stream = AUGMENT_STREAM + 2 * STREAMS[phase] + (kind == "reals")
        return stream_generator(self.config.seed, step, stream, self.device)

    def run_D(self, images, augment=None):
        """D's logits of real or generated images: every image D sees passes here, augmented (ADA) with
        draws from the generator ``augment`` for the global round whose rows this process holds."""
        if self.augment_pipe is not None:
            world = self.dist.world_size
            images = self.augment_pipe(images, augment, batch=images.shape[0] * world,
                                       rows=slice(self.dist.rank, None, world))
        return self.D(images)

    # -------------------------------------------------------------------------------- phases
    # Each phase mirrors NVlabs' StyleGAN2Loss.accumulate_gradients: per round, the loss's mean times
    # the phase's gain (its interval) is back-propagated, the rounds' gradients add up, and one Adam
    # update follows. The regularisers add zero times an output of the graph, as NVlabs does, so every
    # parameter of the updated network gets a gradient (zero where the penalty does not reach it)
    # and Adam advances its moments and step count in every phase.

    def _update(self, module, opt):
        params = [p for p in module.parameters() if p.requires_grad]
        self.dist.sync_gradients(params)
        bad = sanitise_gradients(params)
        self.nan_count = self.nan_count + bad  # a device tensor: read at snapshots only
        opt.step()
        return bad

    def _rounds(self, reals):
        return reals.split(self.batch_gpu) if reals is not None else [None] * self.rounds

    def phase_Gmain(self, step, inputs=None, gain=1):
        self.G.requires_grad_(True), self.D.requires_grad_(False)
        self.G_opt.zero_grad(set_to_none=True)
        augment = self.augment_generator(step, "Gmain", "fakes")
        for round_inputs in inputs or self.draw(step, "Gmain"):
            fakes, _ = self.run_G(round_inputs)
            fake_logits = self.run_D(fakes, augment)
            loss = g_nonsaturating_loss(fake_logits)
            (loss * gain).backward()
            self.stats.add("loss_G", loss)
            self.stats.add("score_fake", fake_logits)
        self.stats.add("nan_G", self._update(self.G, self.G_opt))

    def phase_Greg(self, step, inputs=None, gain=None):
        config = self.config
        gain = config.g_reg_interval if gain is None else gain
        self.G.requires_grad_(True), self.D.requires_grad_(False)
        self.G_opt.zero_grad(set_to_none=True)
        for round_inputs in inputs or self.draw(step, "Greg"):
            fakes, slots = self.run_G(round_inputs)
            lengths = path_lengths(fakes, slots, round_inputs.pl_noise)
            # the updated mean keeps its graph (NVlabs); only the stored copy is detached
            pl_mean = self.pl_mean.lerp(self.dist.all_reduce_mean_differentiable(lengths.mean()), config.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            penalty = (lengths - pl_mean).square()
            loss = (fakes[:, 0, 0, 0] * 0 + penalty * config.pl_weight).mean()
            (loss * gain).backward()
            self.stats.add("pl_length", lengths)
            self.stats.add("pl_penalty", penalty)
        self.stats.add("nan_G", self._update(self.G, self.G_opt))

    def phase_Dmain(self, step, reals, inputs=None, gain=1):
        self.G.requires_grad_(False), self.D.requires_grad_(True)
        self.D_opt.zero_grad(set_to_none=True)
        augment_fakes, augment_reals = (self.augment_generator(step, "Dmain", kind) for kind in ("fakes", "reals"))
        for round_inputs, round_reals in zip(inputs or self.draw(step, "Dmain"), self._rounds(reals)):
            with torch.no_grad():
                fakes, _ = self.run_G(round_inputs)
            fake_logits, real_logits = self.run_D(fakes, augment_fakes), self.run_D(round_reals, augment_reals)
            loss = d_logistic_loss(fake_logits, real_logits)
            (loss * gain).backward()
            self.stats.add("loss_D", loss)
            self.stats.add("score_real", real_logits)
            self._observe_reals(real_logits)
            self.stats.add("D_accuracy", ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2)
        self.stats.add("nan_D", self._update(self.D, self.D_opt))

    def phase_Dreg(self, step, reals, gain=None):
        config = self.config
        gain = config.d_reg_interval if gain is None else gain
        self.G.requires_grad_(False), self.D.requires_grad_(True)
        self.D_opt.zero_grad(set_to_none=True)
        augment = self.augment_generator(step, "Dreg", "reals")
        for round_reals in self._rounds(reals):
            r1, real_logits = r1_penalty(lambda images: self.run_D(images, augment), round_reals)
            self._observe_reals(real_logits)
            loss = (real_logits[:, 0] * 0 + r1 * (config.gamma / 2)).mean()
            (loss * gain).backward()
            self.stats.add("r1_penalty", r1)
        self.stats.add("nan_D", self._update(self.D, self.D_opt))

    def _observe_reals(self, real_logits):
        """NVlabs' Loss/signs/real, reported by the Dmain and the R1 phases alike: ADA's signal."""
        self.stats.add("signs_real", real_logits.sign())
        if self.ada is not None:
            self.ada.observe(real_logits)

    def schedule(self, step):
        """[(phase, gain)] of ``step``, in NVlabs' order: each regulariser every its interval, from step
        0, with the interval as gain; a regulariser of weight 0 has nothing to update (NVlabs runs
        its phase, which computes no gradient, so Adam steps nothing)."""
        config = self.config
        phases = [("Gmain", 1)]
        if config.pl_weight != 0 and step % config.g_reg_interval == 0:
            phases.append(("Greg", config.g_reg_interval))
        phases.append(("Dmain", 1))
        if config.gamma != 0 and step % config.d_reg_interval == 0:
            phases.append(("Dreg", config.d_reg_interval))
        return phases

    def step(self, reals, inputs=None):
        """One training step on this process's rows of the global batch ``self.step_index``;
        ``inputs``: optional {phase: [RoundInputs]} in place of the seeded draws (tests)."""
        config, step = self.config, self.step_index
        inputs = inputs or {}
        for phase, gain in self.schedule(step):
            if phase == "Gmain":
                self.phase_Gmain(step, inputs.get(phase), gain)
            elif phase == "Greg":
                self.phase_Greg(step, inputs.get(phase), gain)
            elif phase == "Dmain":
                self.phase_Dmain(step, reals, inputs.get(phase), gain)
            else:
                self.phase_Dreg(step, reals, gain)
        beta = ema_beta(config.batch, config.ema_kimg, config.ema_rampup, self.nimg)
        update_ema(self.G_ema, self.G, beta)
        self.step_index += 1
        self.nimg += config.batch
        if self.ada is not None:
            self.ada.end_step(self.augment_pipe, self.step_index, self.dist)
        if self.augment_pipe is not None:
            self.stats.add("augment_p", self.augment_pipe.p)
        self.G.requires_grad_(True), self.D.requires_grad_(True)

    # -------------------------------------------------------------------------------- state

    def learning_rates(self):
        return {"lr_G": self.G_opt.param_groups[0]["lr"], "lr_D": self.D_opt.param_groups[0]["lr"]}

    def state_dict(self):
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "G_opt": self.G_opt.state_dict(), "D_opt": self.D_opt.state_dict(), "pl_mean": self.pl_mean.cpu(),
                "counters": {"step": self.step_index, "nimg": self.nimg, "kimg": self.nimg / 1000,
                             "nan_count": int(self.nan_count)},
                **({"augment": {"p": self.augment_pipe.p.cpu(), "ada": self.ada.state_dict() if self.ada else None}}
                   if self.augment_pipe is not None else {})}

    def load_state_dict(self, state):
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.G_opt.load_state_dict(state["G_opt"])
        self.D_opt.load_state_dict(state["D_opt"])
        self.pl_mean.copy_(state["pl_mean"])
        counters = state["counters"]
        self.step_index, self.nimg, self.nan_count = counters["step"], counters["nimg"], counters["nan_count"]
        if self.augment_pipe is not None and state.get("augment") is not None:
            self.augment_pipe.p.copy_(state["augment"]["p"])
            if self.ada is not None and state["augment"].get("ada") is not None:
                self.ada.load_state_dict(state["augment"]["ada"], self.device)


def fixed_latents(config, count):
    """The latents of the sample grids: the same for every snapshot, resume and process count."""
    return torch.randn([count, config.z_dim], generator=torch.Generator().manual_seed(config.seed + 123_457))


def memory_gb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux
