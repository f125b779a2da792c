"""The sources of every StyleGAN2-search setting (``stylenas search``), keyed by name
(``stylenas.config_sources``; docs/sources.md is rendered from ``TABLE``). The alphaGAN paper
(arXiv:2006.09134v2) is the only source: its StyleGAN2 code was never published (notes: "coming
soon"), so "authors' code" entries do not exist here; StyleGAN2's own settings come from NVlabs'
stylegan2-ada-pytorch."""

from __future__ import annotations

from ..config_sources import Entry, choice, code, paper, sourced

TINY = choice("tiny preset, sized for CPU tests and make demo")
OPERATIONAL = "StyleNAS choice: bookkeeping, no effect on the search's result"

TABLE = {
    "space": Entry(paper("section 6.1 and Table 8 (micro and macro); default micro, the paradigm of the best "
                         "architectures (section 6.3, Table 9)")),
    "dynamic_w": Entry(paper("section 6.2, dynamic {W_i}; on by default as in Table 9")),
    "torgb_w": Entry(paper("Fig. 1 / section 6.2: tRGB_k reads L_k's latent, only tRGB_(m+1) has its own "
                           "('tied'); --torgb-w free gives every toRGB its own latent")),
    "resolution": Entry(paper("appendix .1.2: the data's resolution (CelebA 128, church 256, FFHQ 1024); here the "
                              "largest stored in --data or --resolution")),
    "preset": Entry(paper("appendix .1.2 (preset 'stylegan2')"), {"tiny": TINY}),
    "iterations": Entry(paper("appendix .1.2: 500 search iterations"), {"tiny": TINY}),
    "T": Entry(paper("appendix .1.2: alphaGAN (s) with T = 20 (weight part)"), {"tiny": TINY}),
    "R": Entry(paper("appendix .1.2: R = 5 (test-weight part)"), {"tiny": TINY}),
    "S": Entry(paper("appendix .1.2: S = 20 (architecture part)"), {"tiny": TINY}),
    "batch": Entry(paper("appendix .1.2: batch size 2"), {"tiny": TINY}),
    "channel_mult": Entry(paper("appendix .1.2: G and D at 1/8 of StyleGAN2's channels"), {"tiny": TINY}),
    "loss": Entry(paper("eq. 5, the hinge loss of the game whose duality gap is minimised (--loss logistic: "
                        "StyleGAN2's, NVlabs training/loss.py)")),
    "lr": Entry(paper("appendix .1.1.1 (alphaGAN (s), which appendix .1.2 adopts): weights Adam lr 2e-4")),
    "betas": Entry(paper("appendix .1.1.1: weights Adam betas (0.0, 0.999), no weight decay")),
    "arch_lr": Entry(paper("appendix .1.1.1: architecture Adam lr 3e-4"),
                     {"tiny": choice("tiny preset: 1e-2, so that the alphas move visibly in a few iterations")}),
    "arch_betas": Entry(paper("appendix .1.1.1: architecture Adam betas (0.5, 0.999)")),
    "arch_weight_decay": Entry(paper("appendix .1.1.1: architecture weight decay 1e-3")),
    "z_dim": Entry(code("NVlabs training/networks.py: z_dim 512 (StyleGAN2)"), {"tiny": TINY}),
    "w_dim": Entry(code("NVlabs training/networks.py: w_dim 512 (StyleGAN2)"), {"tiny": TINY}),
    "channel_base": Entry(code("StyleGAN2 config-f: channel_base 32768 (NVlabs train.py cfg 'stylegan2', fmaps 1), "
                               "times channel_mult"), {"tiny": TINY}),
    "channel_max": Entry(code("StyleGAN2 config-f: channel_max 512, times channel_mult"), {"tiny": TINY}),
    "discriminator": Entry(choice("StyleGAN2's residual D (NVlabs training/networks.py) at the searched G's widths: "
                                  "the paper fixes D (section 4.2) but does not describe the StyleGAN2 search's D")),
    "regularizers": Entry(choice("none: Algorithm 1 optimises the adversarial loss (eq. 5) alone, and the paper names "
                                 "no R1, path length, style mixing or EMA for the search")),
    "data_split": Entry(paper("appendix .1.2: the data split equally into a training half (weights) and a "
                              "validation half (architecture), by a permutation drawn from --seed")),
    "batch_sampling": Entry(choice("each batch drawn uniformly with replacement from its half, batch k a function of "
                                   "(seed, half, k), so a resumed search reads the same batches; the paper does not "
                                   "say how batches are drawn")),
    "seed": Entry(choice("--seed, default 0")),
    "dataset": Entry(choice("the data searched: image count, resolution and a hash of a few records (what "
                            "--resume compares)")),
    "data": Entry(choice("--data")),
    "outdir": Entry(OPERATIONAL),
    "device": Entry(OPERATIONAL),
    "resume": Entry(OPERATIONAL),
    "sample_every": Entry(OPERATIONAL),
    "checkpoint_every": Entry(OPERATIONAL),
    "workers": Entry(OPERATIONAL),
    "max_nonfinite": Entry(choice("stop after this many skipped non-finite steps in a row (the paper has no such "
                                  "rule; finite runs are unaffected)")),
}


def search_record(config, preset, iterations, network, channels, dataset):
    """config.json of a search: every setting of ``config`` (a SearchConfig) as resolved, the
    preset's step counts and optimiser settings (``preset``: the Preset with the run's batch and
    loss), the network sizes and the data fingerprint, with their sources."""
    values = {"space": config.space, "dynamic_w": config.dynamic_w, "torgb_w": config.torgb_w,
              "resolution": dataset["resolution"], "preset": config.preset, "iterations": iterations,
              "T": preset.T, "R": preset.R, "S": preset.S, "batch": preset.batch,
              "channel_mult": channels["channel_mult"], "loss": preset.loss, "lr": preset.lr,
              "betas": list(preset.betas), "arch_lr": preset.arch_lr, "arch_betas": list(preset.arch_betas),
              "arch_weight_decay": preset.arch_weight_decay, "z_dim": network["z_dim"], "w_dim": network["w_dim"],
              "channel_base": channels["channel_base"], "channel_max": channels["channel_max"],
              "discriminator": "stylegan2-residual", "regularizers": "none", "data_split": "halves", "batch_sampling": "with-replacement",
              "seed": config.seed, "dataset": dataset, "data": str(config.data), "outdir": str(config.outdir),
              "device": config.device, "resume": config.resume, "sample_every": config.sample_every,
              "checkpoint_every": config.checkpoint_every, "workers": config.workers,
              "max_nonfinite": config.max_nonfinite}
    given = {"iterations": ("iters", "--iters"), "batch": ("batch", "--batch"),
             "channel_mult": ("channel_mult", "--channel-mult"), "loss": ("loss", "--loss")}
    from_command_line = {name: option for name, (attr, option) in given.items() if getattr(config, attr) is not None}
    return sourced(values, TABLE, preset=config.preset, from_command_line=from_command_line)
