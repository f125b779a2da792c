"""DEGAS (Doveh and Giryes, section 3.2) on the whole-generator supernet of
``conventional.spaces.degas_dag``: GLO (Bojanowski et al.), a latent code per training image
optimised with the weights by the reconstruction loss ``L2 + Lap1`` (``losses.glo_loss``) on the
training half, alternating with a step on the alphas (and the codes) on the validation half,
first-order DARTS. ``conventional.searchers.differentiable`` runs it. DARTS' CIFAR settings
(section 4: "We use the DARTS hyperparameters of CIFAR-10, except for the learning rate that is set
to 3e-1 for CIFAR-10, and 3e-2 for STL"): 50 epochs, batch 64, weights SGD (cosine to 0.001,
momentum 0.9, weight decay 3e-4, gradient clip 5), alphas Adam (betas (0.5, 0.999), weight decay
1e-3).

Which learning rate DEGAS changed is not said. DARTS has two: the weights' SGD lr 0.025 and the
alphas' Adam lr 3e-4. ``LR_READINGS``: "weights" (the default) sets the weights' lr to 3e-1 / 3e-2
and keeps DARTS' 3e-4 for the alphas; "alphas" sets the alphas' lr to 3e-1 / 3e-2 and keeps DARTS'
0.025 for the weights. Under "alphas" Adam moves every alpha by up to 0.3 a step, so the softmax
weights saturate within the first epoch (390 steps at batch 64 on CIFAR-10's 25k training half):
``alpha_trajectories`` measures both (``scripts/degas_lr_readings.py``, table in
docs/conventional.md). ``--lr`` and ``--arch-lr`` set either directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ...config_sources import Entry, choice, code, paper
from ..losses import CT_FEATURE_WEIGHT, CT_MARGIN, CT_WEIGHT, GP_WEIGHT, glo_loss
from ..spaces.degas_dag import DegasSuperGenerator
from ..sources import TINY, with_changes
from ..train import RETRAIN_SOURCES as TRAIN_SOURCES
from .common import DIFFERENTIABLE_RUN_SOURCES, HalfStream, SearchError, entropy


@dataclass(frozen=True)
class DegasPreset:
    epochs: int
    batch: int
    arch_lr: float
    lr: float = 0.025  # DARTS CIFAR: SGD, cosine to lr_min
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    latent_lr: float = 0.025  # GLO codes: plain SGD, then back onto the unit sphere
    arch_betas: tuple = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    steps_per_epoch: int | None = None  # None: one pass over the training half
    gf_dim: int = 16  # DARTS searches a narrow network (16 initial channels)
    latent_dim: int = 128
    normal_per_stage: int = 2


DARTS_LR, DARTS_ARCH_LR = 0.025, 3e-4  # DARTS train_search.py --learning_rate, --arch_learning_rate
DEGAS_LR = {"cifar": 3e-1, "stl": 3e-2}  # DEGAS section 4
# (weights' lr, alphas' lr) of each reading of "the learning rate that is set to 3e-1 / 3e-2"
LR_READINGS = {"weights": lambda degas_lr: (degas_lr, DARTS_ARCH_LR),
               "alphas": lambda degas_lr: (DARTS_LR, degas_lr)}
DEFAULT_READING = "weights"  # the one whose alphas do not saturate in the first epoch

DEGAS_PRESETS = {
    "cifar": DegasPreset(epochs=50, batch=64, arch_lr=LR_READINGS[DEFAULT_READING](DEGAS_LR["cifar"])[1],
                         lr=LR_READINGS[DEFAULT_READING](DEGAS_LR["cifar"])[0]),
    "stl": DegasPreset(epochs=50, batch=64, arch_lr=LR_READINGS[DEFAULT_READING](DEGAS_LR["stl"])[1],
                       lr=LR_READINGS[DEFAULT_READING](DEGAS_LR["stl"])[0]),
    # alphas that move visibly within a few CPU steps
    "tiny": DegasPreset(epochs=6, batch=4, arch_lr=3e-1, steps_per_epoch=2, gf_dim=8, latent_dim=16),
}
OPTIONS = ("lr", "arch_lr")  # search-conventional --lr, --arch-lr replace the preset's

DARTS_REPO = "quark0/darts cnn/train_search.py"
# where every search setting comes from (DIR/config.json; docs/sources.md is rendered from it)
SOURCES = {
    "preset": Entry(paper("section 4: CIFAR-10 (cifar) and STL (stl) searches"), {"tiny": TINY}),
    "iterations": Entry(paper(f"section 4: DARTS' CIFAR-10 hyper-parameters: 50 epochs ({DARTS_REPO} --epochs)"),
                        {"tiny": TINY}),
    "steps_per_epoch": Entry(choice("one pass over the training half (DARTS' epoch)"), {"tiny": TINY}),
    "batch": Entry(paper(f"section 4: DARTS' batch 64 ({DARTS_REPO} --batch_size)"), {"tiny": TINY}),
    "lr": Entry(paper("section 4: 'the learning rate that is set to 3e-1 for CIFAR-10, and 3e-2 for STL', read as "
                      "the weights' SGD rate (DARTS' 0.025 otherwise)"),
                {"tiny": choice("tiny preset: DARTS' 0.025")},
                deviation="the paper does not say which rate; the other reading sets the alphas' rate instead",
                restore="--lr 0.025 --arch-lr 0.3 (CIFAR-10) / 0.03 (STL)"),
    "arch_lr": Entry(code(f"{DARTS_REPO} --arch_learning_rate 3e-4 (DARTS' CIFAR-10 value, paper section 4)"),
                     {"tiny": choice("tiny preset: 3e-1, so that the alphas move visibly in a few CPU steps")},
                     deviation="under the other reading of section 4 the alphas take 3e-1 / 3e-2; that saturates "
                               "their softmax within the first epoch (docs/conventional.md)",
                     restore="--arch-lr 0.3 --lr 0.025"),
    "lr_min": Entry(code(f"{DARTS_REPO} --learning_rate_min 0.001 (cosine schedule)")),
    "momentum": Entry(code(f"{DARTS_REPO} --momentum 0.9")),
    "weight_decay": Entry(code(f"{DARTS_REPO} --weight_decay 3e-4")),
    "grad_clip": Entry(code(f"{DARTS_REPO} --grad_clip 5")),
    "arch_betas": Entry(code("quark0/darts cnn/architect.py: Adam betas (0.5, 0.999)")),
    "arch_weight_decay": Entry(code(f"{DARTS_REPO} --arch_weight_decay 1e-3")),
    "latent_lr": Entry(choice("the GLO codes move by plain SGD at DARTS' weight rate 0.025 and are projected back "
                              "onto the unit sphere (GLO; DEGAS does not say)")),
    "gf_dim": Entry(code(f"{DARTS_REPO} --init_channels 16 (DARTS searches a narrow network)"), {"tiny": TINY}),
    "latent_dim": Entry(choice("128, as the CT-GAN generator DEGAS retrains in (the paper does not say)"),
                        {"tiny": TINY}),
    "normal_per_stage": Entry(choice("two normal feature maps per stage: our reading of Fig. 2")),
    "loss": Entry(paper("section 3.2: L2 + Lap1, GLO's reconstruction loss (Laplacian pyramid, 3 levels)")),
    "data_split": Entry(choice("DARTS' two halves of the training set (alternating optimisation, section 3.2), "
                               "by a permutation drawn from --seed")),
    **DIFFERENTIABLE_RUN_SOURCES,
}


# retraining a DEGAS genotype: CT-GAN as its authors' CIFAR-10 code runs it
CTGAN_CODE = "biuyq/CT-GAN CT-GANs/tensorflow_generative_model/CT_gan_cifar_resnet.py"
RETRAIN_SOURCES = with_changes(
    TRAIN_SOURCES,
    loss=Entry(paper("section 3.2 'GAN training': the found generator is trained in CT-GAN's framework with "
                     f"its discriminator; {CTGAN_CODE} lines 244-293: WGAN-GP (lambda {GP_WEIGHT:g}) + the "
                     f"consistency term (lambda2 {CT_WEIGHT:g}, M {CT_MARGIN:g}, feature weight {CT_FEATURE_WEIGHT:g}), "
                     "squared differences, the mean over D_'s features; the critic with dropout 0.2/0.5/0.5 "
                     "after blocks 2-4, mean pooling, no spectral norm, tflib's initialisation "
                     "(conventional/spaces/ctgan.py)")),
    steps=Entry(code(f"{CTGAN_CODE} line 42: ITERS = 100000 G iterations"), {"tiny": TINY}),
    lr=Entry(code(f"{CTGAN_CODE} line 48: LR = 2e-4")),
    lr_schedule=Entry(code(f"{CTGAN_CODE} lines 309-310: linear decay to 0 over ITERS")),
    betas=Entry(code(f"{CTGAN_CODE} lines 333-334: Adam beta1 0, beta2 0.9")),
    n_critic=Entry(code(f"{CTGAN_CODE} line 50: N_CRITIC = 5"), {"tiny": TINY}),
    d_batch=Entry(code(f"{CTGAN_CODE} line 40: BATCH_SIZE = 64"), {"tiny": TINY}),
    g_batch=Entry(code(f"{CTGAN_CODE} line 41: GEN_BS_MULTIPLE = 2 (G batch 128)"), {"tiny": TINY}),
    df_dim=Entry(code(f"{CTGAN_CODE} line 44: DIM_D = 128"), {"tiny": TINY}),
    gf_dim=Entry(choice("256, the width of the other retrainings: DEGAS does not give its generator's width"),
                 {"tiny": TINY}),
    ema_decay=Entry(choice("an EMA of G (0.999) as the other retrainings; CT-GAN evaluates G itself"),
                    deviation="CT-GAN keeps no EMA of G; the EMA copy is what snapshots and metrics use"),
)


class DegasMethod:
    """DEGAS: per step, GLO on the weights and codes of a training batch, then first-order
    DARTS on the alphas (and the codes) of a validation batch; one iteration = one epoch."""

    def __init__(self, preset, resolution, halves, dataset, seed, device, options=None):
        """``preset``: a name of DEGAS_PRESETS or a DegasPreset; ``options``: {"lr", "arch_lr"}
        replacing the preset's (None: keep)."""
        if not isinstance(preset, DegasPreset):
            if preset not in DEGAS_PRESETS:
                raise SearchError(f"--preset for degas must be one of {', '.join(DEGAS_PRESETS)}, got {preset!r}")
            preset = DEGAS_PRESETS[preset]
        given = {k: v for k, v in (options or {}).items() if v is not None}
        unknown = set(given) - set(OPTIONS)
        if unknown:
            raise SearchError(f"degas takes the options {', '.join(OPTIONS)}, not {', '.join(sorted(unknown))}")
        if any(float(v) <= 0 for v in given.values()):
            raise SearchError(f"--lr and --arch-lr must be positive, got {given}")
        self.options = {k: float(v) for k, v in given.items()}
        p = self.preset = replace(preset, **self.options)
        self.sources = SOURCES
        self.device = device
        torch.manual_seed(seed)
        self.G = DegasSuperGenerator(resolution, p.gf_dim, p.latent_dim, p.normal_per_stage).to(device)
        # GLO: a code per image on the unit sphere (random start; GLO's PCA start needs the whole set)
        self.codes = torch.nn.functional.normalize(torch.randn(len(dataset), p.latent_dim), dim=1).to(device)
        self.codes.requires_grad_(True)
        self.w_opt = torch.optim.SGD(self.G.weight_parameters(), lr=p.lr, momentum=p.momentum,
                                     weight_decay=p.weight_decay)
        self.code_opt = torch.optim.SGD([self.codes], lr=p.latent_lr)  # no momentum: untouched codes stay put
        self.arch_opt = torch.optim.Adam(self.G.arch_parameters(), lr=p.arch_lr, betas=p.arch_betas,
                                         weight_decay=p.arch_weight_decay)
        self.steps_per_epoch = p.steps_per_epoch or max(1, len(halves[0]) // p.batch)
        self.train = HalfStream(dataset, halves[0], p.batch, seed, 0, device, with_index=True)
        self.val = HalfStream(dataset, halves[1], p.batch, seed, 1, device, with_index=True)
        self.iterations, self.epochs_done = p.epochs, 0
        self.describe = (f"DEGAS (GLO): {self.steps_per_epoch} steps per epoch, batch {p.batch}, gf {p.gf_dim}, "
                         f"weights lr {p.lr}, arch lr {p.arch_lr}")

    def _lr(self):
        p = self.preset  # DARTS' cosine schedule, per epoch
        return p.lr_min + 0.5 * (p.lr - p.lr_min) * (1 + math.cos(math.pi * self.epochs_done / p.epochs))

    def _fit(self, index, images, optimizers, params):
        loss = glo_loss(self.G(self.codes[index]), images)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if params is not None:
            torch.nn.utils.clip_grad_norm_(params, self.preset.grad_clip)
        for opt in optimizers:
            opt.step()
        with torch.no_grad():  # GLO keeps the codes on the unit sphere
            self.codes[index] = torch.nn.functional.normalize(self.codes[index], dim=1)
        return loss.item()

    def step(self):
        for group in self.w_opt.param_groups:
            group["lr"] = self._lr()
        weight_losses, arch_losses = [], []
        arch, weights = self.G.arch_parameters(), self.G.weight_parameters()
        for _ in range(self.steps_per_epoch):
            for p in arch:
                p.requires_grad_(False)
            weight_losses.append(self._fit(*next(self.train), (self.w_opt, self.code_opt), weights))
            for p in arch:
                p.requires_grad_(True)
            for p in weights:
                p.requires_grad_(False)
            arch_losses.append(self._fit(*next(self.val), (self.arch_opt, self.code_opt), None))
            for p in weights:
                p.requires_grad_(True)
        self.epochs_done += 1
        return {"iteration": self.epochs_done, "train_loss": sum(weight_losses) / len(weight_losses),
                "val_loss": sum(arch_losses) / len(arch_losses), "lr": self._lr(),
                "entropy": {k: entropy(v) for k, v in self.G.op_weights().items()}}

    @property
    def done(self):
        return self.epochs_done

    def config_values(self):
        """The search's resolved settings for config.json (``SOURCES`` names)."""
        p = self.preset
        return {"iterations": p.epochs, "steps_per_epoch": self.steps_per_epoch, "batch": p.batch, "lr": p.lr,
                "arch_lr": p.arch_lr, "lr_min": p.lr_min, "momentum": p.momentum, "weight_decay": p.weight_decay,
                "grad_clip": p.grad_clip, "arch_betas": list(p.arch_betas), "arch_weight_decay": p.arch_weight_decay,
                "latent_lr": p.latent_lr, "gf_dim": p.gf_dim, "latent_dim": p.latent_dim,
                "normal_per_stage": p.normal_per_stage, "loss": "glo: l2 + laplacian l1", "data_split": "halves"}

    def state_dict(self):
        return {"G": self.G.state_dict(), "codes": self.codes.detach(), "w_opt": self.w_opt.state_dict(),
                "code_opt": self.code_opt.state_dict(), "arch_opt": self.arch_opt.state_dict(),
                "epochs_done": self.epochs_done, "train_step": self.train.step, "val_step": self.val.step}

    def load_state_dict(self, state):
        self.G.load_state_dict(state["G"])
        with torch.no_grad():
            self.codes.copy_(state["codes"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.code_opt.load_state_dict(state["code_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.epochs_done = int(state["epochs_done"])
        self.train.step, self.val.step = state["train_step"], state["val_step"]

    def arch_snapshot(self):
        return self.G.op_weights()


def alpha_trajectories(dataset, steps, record_at, resolution=None, batch=8, seed=0, degas_lr=DEGAS_LR["cifar"],
                       readings=tuple(LR_READINGS), device="cpu"):
    """The alphas under each reading of DEGAS' learning rate on a small run (the tiny network,
    ``steps`` alternating steps at ``batch``, DARTS' other settings): for each reading, at each step
    of ``record_at``, the mean and the largest over the edges of an edge's strongest softmax weight
    (1 / number of ops when nothing moved, 1 when saturated). Returns {reading: [{"step", "mean_max",
    "max_max"}]}."""
    from ...search.run import split_halves

    resolution = resolution or int(dataset[0].shape[-1])
    halves = split_halves(len(dataset), seed)
    out = {}
    for reading in readings:
        lr, arch_lr = LR_READINGS[reading](degas_lr)
        # one "epoch" of ``steps`` steps: the weights' cosine schedule stays at its start, as in epoch 1
        preset = replace(DEGAS_PRESETS["tiny"], lr=lr, arch_lr=arch_lr, batch=batch, epochs=1, steps_per_epoch=1)
        method = DegasMethod(preset, resolution, halves, dataset, seed, torch.device(device))
        rows = []
        for step in range(1, steps + 1):
            method.epochs_done = 0
            method.step()
            if step in record_at:
                strongest = [max(w) for w in method.G.op_weights().values()]
                rows.append({"step": step, "mean_max": sum(strongest) / len(strongest), "max_max": max(strongest)})
        out[reading] = rows
    return out
