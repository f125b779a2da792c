"""alphaGAN (Tian et al., sections 4-5, appendix .1.1.1) on AutoGAN-style cells
(``conventional.spaces.alphagan_cells``) against the fixed SNGAN/AutoGAN discriminator, through the
generic ``stylenas.search.AlphaGANSearcher`` (Algorithms 1 and 2: a weight part of T steps, a
test-weight part of R steps, an architecture part of S steps on the duality gap). Presets (the
searcher's table, ``stylenas.search.alphagan.PRESETS``): ``s`` (T = R = S = 20) and ``l`` (T = R =
one pass over a half, S = 20), 100 iterations, batch 64, gf 256, df 128, latent 128 (section 5);
``tiny`` runs in CPU minutes. ``conventional.searchers.differentiable`` runs it.

Where the authors' code (yuesongtian/AlphaGAN) differs from Algorithm 1, the default is the code, the
run behind the paper's numbers, and an option gives the paper's reading (``OPTIONS_DEFAULT``):

- ``n_critic`` 5: the weight part steps G once per 5 D steps (functions.py train_gan_parameter line
  513, on the global step count; cfg_search.py line 46); Algorithm 1 lines 5-6 step both every batch
  (``--n-critic 1``);
- ``betas`` (0, 0.9) for the weights' Adam (search.py lines 118-121 with cfg_search.py lines 41-42);
  appendix .1.1.1 writes (0, 0.999) (``--betas 0,0.999``);
- ``batches`` "passes": batches without replacement, each pass a fresh permutation of its half cut into
  len // batch batches (PassStream), so the ``l`` preset's T = R = 390 is one pass over 25k, as the
  paper says and as the authors' SubsetRandomSampler loaders run; "uniform" draws each batch anew
  (``--batches uniform``). The authors' loader also yields the last partial batch (40 images, 391
  steps) and restarts a pass at every call; passes here run on across iterations.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ...config_sources import Entry, choice, code, paper
from ...search.alphagan import PRESETS as ALPHAGAN_PRESETS
from ...search.alphagan import AlphaGANSearcher
from ..networks import init_weights
from ..ops import ALPHAGAN_NORMAL_OPS, ALPHAGAN_UP_OPS
from ..sources import TINY, with_changes
from ..spaces.alphagan_cells import AlphaGANSuperGenerator
from ..spaces.discriminators import Discriminator
from ..train import RETRAIN_SOURCES as TRAIN_SOURCES
from .common import DIFFERENTIABLE_RUN_SOURCES, HalfStream, SearchError, entropy

PRESET_NAMES = ("s", "l", "tiny")
# network sizes: the papers' (search at gf 256 / df 128, alphaGAN section 5) and tiny ones
NETWORKS = {"paper": {"gf_dim": 256, "df_dim": 128, "latent_dim": 128},
            "tiny": {"gf_dim": 8, "df_dim": 8, "latent_dim": 16}}
OPTIONS_DEFAULT = {"n_critic": 5, "betas": (0.0, 0.9), "batches": "passes"}  # the authors' code
BATCHES = ("passes", "uniform")

REPO = "yuesongtian/AlphaGAN"
# where every search setting comes from (DIR/config.json; docs/sources.md is rendered from it)
SOURCES = {
    "preset": Entry(paper("section 5.1 / appendix .1.1.1: alphaGAN (s) and (l)"), {"tiny": TINY}),
    "iterations": Entry(paper("appendix .1.1.1: 100 search iterations (the README's search.py commands keep "
                              "cfg_search.py's --epochs 100)"), {"tiny": TINY}),
    "T": Entry(paper("section 5.1: T = 20 (s), 390 = one pass over the 25k training half (l); README: "
                     "--inner_steps 20 / 390"), {"tiny": TINY}),
    "R": Entry(paper("section 5.1: R = 20 (s), 390 (l); README: --worst_steps 20 / 390"), {"tiny": TINY}),
    "S": Entry(paper("section 5.1: S = 20 for both; README: --outter_steps 20"), {"tiny": TINY}),
    "batch": Entry(paper("appendix .1.1.1: batch 64 for G and D"), {"tiny": TINY}),
    "lr": Entry(paper("appendix .1.1.1: weights Adam lr 2e-4 (cfg_search.py --g_lr/--d_lr 0.0002)")),
    "betas": Entry(code(f"{REPO} search.py lines 118-121: Adam(..., (args.beta1, args.beta2)) with cfg_search.py "
                        "lines 41-42: 0.0, 0.9"),
                   deviation="appendix .1.1.1 writes (0.0, 0.999) for the weights",
                   restore="--betas 0,0.999"),
    "n_critic": Entry(code(f"{REPO} functions.py train_gan_parameter line 513: a G step when the global step "
                           "count is a multiple of n_critic (cfg_search.py line 46: 5)"),
                      deviation="Algorithm 1 (lines 5-6) steps D and G on every batch of the weight part",
                      restore="--n-critic 1"),
    "batches": Entry(code(f"{REPO} search.py: SubsetRandomSampler loaders over each half, batches without "
                          "replacement; passes of len // batch batches"),
                     deviation="the paper does not say; 'uniform' draws every batch anew, with replacement",
                     restore="--batches uniform"),
    "arch_lr": Entry(paper("appendix .1.1.1: architecture Adam lr 3e-4 (cfg_search.py line 39)"),
                     {"tiny": choice("tiny preset: 1e-2, so that the alphas move visibly in a few iterations")}),
    "arch_betas": Entry(paper("appendix .1.1.1: (0.5, 0.999) (architect.py lines 20-21)")),
    "arch_weight_decay": Entry(paper("appendix .1.1.1: 1e-3 (cfg_search.py line 40)")),
    "loss": Entry(paper("eq. 5: the hinge loss (functions.py lines 503-521)")),
    "gf_dim": Entry(code(f"{REPO} README search commands: --gf_dim 256"), {"tiny": TINY}),
    "df_dim": Entry(code(f"{REPO} README search commands: --df_dim 128"), {"tiny": TINY}),
    "latent_dim": Entry(paper("appendix .1.1.1: noise dimension 128"), {"tiny": TINY}),
    "data_split": Entry(paper("appendix .1.1.1: the training set split in two halves (25k / 25k), here by a "
                              "permutation drawn from --seed")),
    **DIFFERENTIABLE_RUN_SOURCES,
}

# retraining an alphaGAN genotype: the README's train_geno_gan.py commands
RETRAIN_SOURCES = with_changes(TRAIN_SOURCES, lr_schedule=Entry(code(
    f"{REPO} README lines 41-49: train_geno_gan.py without --lr_decay, so line 157 trains without its "
    "LinearLrDecay: a constant rate (--lr-schedule linear: that decay)")))


class PassStream:
    """Batches of one half without replacement: pass e is a permutation of the half drawn from (seed,
    stream, e), cut into len // batch batches (the remainder waits for a later pass's draw); batch k
    depends on (seed, stream, k) only, so a resumed search reads the same batches."""

    def __init__(self, dataset, indices, batch, seed, stream, device, step=0):
        if len(indices) < batch:
            raise SearchError(f"a half of {len(indices)} images is smaller than the batch ({batch})")
        self.dataset, self.indices, self.batch = dataset, torch.as_tensor(indices), batch
        self.seed, self.stream, self.device, self.step = seed, stream, device, step
        self.per_pass = len(indices) // batch
        self._perm = (None, None)

    def __iter__(self):
        return self

    def positions(self, k):
        """Indices (into the dataset) of batch ``k``."""
        epoch, j = divmod(k, self.per_pass)
        if self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stream * 7_919 + epoch * 104_729 + 17)
            self._perm = (epoch, torch.randperm(len(self.indices), generator=gen))
        return self.indices[self._perm[1][j * self.batch:(j + 1) * self.batch]]

    def __next__(self):
        picks = self.positions(self.step)
        self.step += 1
        return torch.stack([self.dataset[int(i)] for i in picks]).to(self.device).float() / 127.5 - 1


class CriticSearcher(AlphaGANSearcher):
    """Algorithm 1 with the authors' weight part: a D step on every batch, a G step when the count of
    D steps so far (over the whole search) is a multiple of ``n_critic`` (1: Algorithm 1 itself)."""

    def __init__(self, *args, n_critic=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.n_critic, self.d_steps = int(n_critic), 0

    def g_step_due(self):
        due = self.d_steps % self.n_critic == 0  # counted over the whole search, as functions.py does
        self.d_steps += 1
        return due

    def weight_part(self, train):
        stats = super().weight_part(train)
        # spectral norm keeps the last forward's weight as an attribute; after a D step it carries D's graph,
        # which the test-weight part's deepcopy of D refuses: the same values, detached
        for module in self.D.modules():
            weight = getattr(module, "weight", None)
            if hasattr(module, "weight_orig") and torch.is_tensor(weight) and weight.grad_fn is not None:
                module.weight = weight.detach()
        return stats

    def state_dict(self):
        return {**super().state_dict(), "d_steps": self.d_steps}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.d_steps = int(state.get("d_steps", 0))


class AlphaGANMethod:
    """alphaGAN through the generic searcher; one iteration = Algorithm 1's outer loop. ``options``:
    ``n_critic``, ``betas`` (the weights' Adam) and ``batches`` (passes | uniform), defaults
    ``OPTIONS_DEFAULT``."""

    labels = {"up": ALPHAGAN_UP_OPS, "normal": ALPHAGAN_NORMAL_OPS, "skip": ALPHAGAN_UP_OPS}

    def __init__(self, preset_name, resolution, halves, dataset, seed, device, options=None):
        if preset_name not in PRESET_NAMES:
            raise SearchError(f"--preset for alphagan must be s, l or tiny, got {preset_name!r}")
        self.options = {**OPTIONS_DEFAULT, **{k: v for k, v in (options or {}).items() if v is not None}}
        unknown = set(self.options) - set(OPTIONS_DEFAULT)
        if unknown:
            raise SearchError(f"alphagan has no option {sorted(unknown)[0]!r}")
        if self.options["batches"] not in BATCHES:
            raise SearchError(f"--batches must be passes or uniform, got {self.options['batches']!r}")
        if int(self.options["n_critic"]) < 1:
            raise SearchError(f"--n-critic must be at least 1, got {self.options['n_critic']}")
        self.options["betas"] = tuple(float(b) for b in self.options["betas"])
        preset = replace(ALPHAGAN_PRESETS[preset_name], betas=self.options["betas"])
        if preset_name == "l":  # one pass over a half per part (390 on CIFAR-10)
            passes = max(1, len(halves[0]) // preset.batch)
            preset = replace(preset, T=passes, R=passes)
        self.preset_name, self.preset, self.device = preset_name, preset, device
        self.net = NETWORKS["tiny" if preset_name == "tiny" else "paper"]
        self.latent_dim = self.net["latent_dim"]
        torch.manual_seed(seed)
        self.G = AlphaGANSuperGenerator(resolution, self.net["gf_dim"], self.net["latent_dim"]).to(device)
        self.D = init_weights(Discriminator(self.net["df_dim"])).to(device)
        self.searcher = CriticSearcher(self.G, self.D, lambda n: torch.randn(n, self.latent_dim, device=device),
                                       preset, n_critic=self.options["n_critic"])
        stream = PassStream if self.options["batches"] == "passes" else HalfStream
        self.train = stream(dataset, halves[0], preset.batch, seed, 0, device)
        self.val = stream(dataset, halves[1], preset.batch, seed, 1, device)
        self.iterations = preset.iterations
        self.sources = SOURCES
        self.describe = (f"alphaGAN on AutoGAN cells: T={preset.T}, R={preset.R}, S={preset.S}, batch {preset.batch}, "
                         f"n_critic {self.options['n_critic']}, weight betas {preset.betas}, "
                         f"{self.options['batches']} batches, gf {self.net['gf_dim']}, df {self.net['df_dim']}")

    def config_values(self):
        """The method's resolved settings for config.json (``SOURCES`` names)."""
        p = self.preset
        return {"preset": self.preset_name, "iterations": p.iterations, "T": p.T, "R": p.R, "S": p.S,
                "batch": p.batch, "lr": p.lr, "betas": list(p.betas), "n_critic": self.options["n_critic"],
                "batches": self.options["batches"], "arch_lr": p.arch_lr, "arch_betas": list(p.arch_betas),
                "arch_weight_decay": p.arch_weight_decay, "loss": p.loss, **self.net, "data_split": "halves"}

    def step(self):
        stats = self.searcher.iteration(self.train, self.val)
        stats["entropy"] = {k: entropy(v) for k, v in self.G.op_weights().items()}
        return stats

    @property
    def done(self):
        return self.searcher.iterations_done

    def state_dict(self):
        return {"searcher": self.searcher.state_dict(), "train_step": self.train.step, "val_step": self.val.step}

    def load_state_dict(self, state):
        self.searcher.load_state_dict(state["searcher"])
        self.train.step, self.val.step = state["train_step"], state["val_step"]

    def arch_snapshot(self):
        return self.G.op_weights()
