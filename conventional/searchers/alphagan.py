"""alphaGAN (Tian et al., sections 4-5, appendix .1.1.1) on AutoGAN-style cells
(``conventional.spaces.alphagan_cells``) against the fixed SNGAN/AutoGAN discriminator, through the
generic ``stylenas.search.AlphaGANSearcher`` (Algorithms 1 and 2: a weight part of T steps, a
test-weight part of R steps, an architecture part of S steps on the duality gap). Presets (the
searcher's table, ``stylenas.search.alphagan.PRESETS``): ``s`` (T = R = S = 20) and ``l`` (T = R =
one pass over the training half, S = 20), 100 iterations, batch 64, gf 256, df 128, latent 128
(section 5); ``tiny`` runs in CPU minutes. ``conventional.searchers.differentiable`` runs it.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ...search.alphagan import PRESETS as ALPHAGAN_PRESETS
from ...search.alphagan import AlphaGANSearcher
from ..networks import init_weights
from ..ops import ALPHAGAN_NORMAL_OPS, ALPHAGAN_UP_OPS
from ..spaces.alphagan_cells import AlphaGANSuperGenerator, entropy
from ..spaces.discriminators import Discriminator
from .common import HalfStream, SearchError

PRESET_NAMES = ("s", "l", "tiny")
# network sizes: the papers' (search at gf 256 / df 128, alphaGAN section 5) and tiny ones
NETWORKS = {"paper": {"gf_dim": 256, "df_dim": 128, "latent_dim": 128},
            "tiny": {"gf_dim": 8, "df_dim": 8, "latent_dim": 16}}


class AlphaGANMethod:
    """alphaGAN through the generic searcher; one iteration = Algorithm 1's outer loop."""

    labels = {"up": ALPHAGAN_UP_OPS, "normal": ALPHAGAN_NORMAL_OPS, "skip": ALPHAGAN_UP_OPS}

    def __init__(self, preset_name, resolution, halves, dataset, seed, device):
        if preset_name not in PRESET_NAMES:
            raise SearchError(f"--preset for alphagan must be s, l or tiny, got {preset_name!r}")
        preset = ALPHAGAN_PRESETS[preset_name]
        if preset_name == "l":  # one pass over the training half per part (390 on CIFAR-10)
            passes = max(1, len(halves[0]) // preset.batch)
            preset = replace(preset, T=passes, R=passes)
        self.preset, self.device = preset, device
        net = NETWORKS["tiny" if preset_name == "tiny" else "paper"]
        self.latent_dim = net["latent_dim"]
        torch.manual_seed(seed)
        self.G = AlphaGANSuperGenerator(resolution, net["gf_dim"], net["latent_dim"]).to(device)
        self.D = init_weights(Discriminator(net["df_dim"])).to(device)
        self.searcher = AlphaGANSearcher(self.G, self.D, lambda n: torch.randn(n, self.latent_dim, device=device),
                                         preset)
        self.train = HalfStream(dataset, halves[0], preset.batch, seed, 0, device)
        self.val = HalfStream(dataset, halves[1], preset.batch, seed, 1, device)
        self.iterations = preset.iterations
        self.describe = (f"alphaGAN on AutoGAN cells: T={preset.T}, R={preset.R}, S={preset.S}, batch {preset.batch}, "
                         f"gf {net['gf_dim']}, df {net['df_dim']}")

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
