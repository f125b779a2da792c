"""The sources of every retraining setting (``stylenas train``): the ``TrainConfig`` fields and the
run's context, keyed by field name (``stylenas.config_sources``; docs/sources.md is rendered from
``TABLE``). NVlabs = NVlabs/stylegan2-ada-pytorch; the alphaGAN paper is arXiv:2006.09134v2."""

from __future__ import annotations

from ..config_sources import Entry, choice, code, paper, sourced

CFG_SPECS = code("NVlabs train.py, cfg_specs['{cfg}'].{key}")
AUTO = code("NVlabs train.py, cfg 'auto' heuristic: {rule}")
TINY = choice("tiny preset, sized for CPU tests and make demo")


PAPER = paper("alphaGAN appendix .1.2, retraining with 'the config-f configuration in StyleGAN2': {what}")


def _cfg(key, auto_rule, in_paper=None):
    """Entry of a value NVlabs' --cfg presets set (``cfg_specs``); ``in_paper``: what the alphaGAN
    paper's retraining (``--cfg paper``) takes, when not simply config-f's."""
    config_f = CFG_SPECS.format(cfg="stylegan2", key=key)
    return {"source": CFG_SPECS.format(cfg="<--cfg>", key=key),
            "by_preset": {"auto": AUTO.format(rule=auto_rule), "tiny": TINY,
                          "paper": PAPER.format(what=in_paper or config_f),
                          **{cfg: CFG_SPECS.format(cfg=cfg, key=key)
                             for cfg in ("stylegan2", "paper256", "paper512", "paper1024")}}}


TABLE = {
    "cfg": Entry(code("NVlabs train.py --cfg (its presets); default 'auto' as NVlabs'")),
    "resolution": Entry(choice("the genotype's resolution; for 'stylegan2' the largest stored in --data or "
                               "--resolution (paper appendix .1.2: search and retrain at the data's resolution)")),
    "batch": Entry(**_cfg("mb", "max(min(gpus * min(4096 // res, 32), 64), gpus)",
                          "mini-batch 8 on 4 GPUs (CelebA, church), 4 on 8 GPUs (FFHQ): 32 in all read per GPU, "
                          "config-f's own mb"),
                   deviation="'auto' and 'paper256' use other batches than the alphaGAN paper's retraining (32 "
                             "read per GPU; 8 if the paper's 'mini-batch' is the total)",
                   restore="--cfg paper (--batch-gpu 8 for its per-GPU rounds on fewer GPUs; --batch 8 for the "
                           "other reading)"),
    "mbstd_group": Entry(**_cfg("mbstd", "min(mb // gpus, 4)")),
    "channel_base": Entry(**_cfg("fmaps (x 32768)", "fmaps 1 at >= 512 px, else 0.5"),
                          deviation="config-f (the paper's retraining, appendix .1.2) is fmaps 1 = 32768 at "
                                    "every resolution; 'auto' and 'paper256' use 0.5 below 512 px",
                          restore="--cfg paper or --cfg stylegan2 (config-f widths)"),
    "channel_max": Entry(code("NVlabs training/networks.py, channel_max=512"), {"tiny": TINY}),
    "lr": Entry(**_cfg("lrate", "0.002 at >= 1024 px, else 0.0025")),
    "gamma": Entry(**_cfg("gamma", "0.0002 * res ** 2 / mb")),
    "ema_kimg": Entry(**_cfg("ema", "mb * 10 / 32")),
    "ema_rampup": Entry(**_cfg("ramp", "0.05")),
    "kimg": Entry(code("NVlabs train.py, --kimg default 25000"), {"tiny": TINY},
                  deviation="the alphaGAN paper retrains 15000 kimg (CelebA, church) and 20000 kimg (FFHQ), "
                            "Table 8",
                  restore="--kimg 15000 or --kimg 20000"),
    "snap": Entry(code("NVlabs train.py, --snap 50 ticks of 4 kimg = 200 kimg"), {"tiny": TINY}),
    "z_dim": Entry(code("NVlabs training/networks.py, z_dim 512"), {"tiny": TINY}),
    "w_dim": Entry(code("NVlabs training/networks.py, w_dim 512"), {"tiny": TINY}),
    "mapping_layers": Entry(code("NVlabs train.py, cfg_specs[...].map = 8 (stylegan2, paper*)"),
                            deviation="NVlabs' 'auto' uses 2 mapping layers; every preset here keeps 8, because a "
                                      "genotype chooses among the latents W_1..W_8 of an 8-layer mapping network",
                            restore="none (a genotype needs W_1..W_8)"),
    "pl_weight": Entry(code("NVlabs train.py, loss_kwargs.pl_weight = 2"),
                       {"paper": paper("alphaGAN appendix .1.2: 'we abandon the regularization term' (0)")},
                       deviation="the alphaGAN paper retrains without the path-length regulariser (appendix .1.2); "
                                 "every preset but 'paper' keeps NVlabs' 2",
                       restore="--cfg paper or --pl-weight 0"),
    "pl_decay": Entry(code("NVlabs training/loss.py, StyleGAN2Loss(pl_decay=0.01)")),
    "pl_batch_shrink": Entry(code("NVlabs training/loss.py, StyleGAN2Loss(pl_batch_shrink=2)")),
    "mixing": Entry(code("NVlabs train.py, loss_kwargs.style_mixing_prob = 0.9")),
    "g_reg_interval": Entry(code("NVlabs train.py, G_reg_interval = 4")),
    "d_reg_interval": Entry(code("NVlabs train.py, D_reg_interval = 16")),
    "adam_betas": Entry(code("NVlabs train.py, G_opt_kwargs/D_opt_kwargs betas=[0, 0.99]")),
    "adam_eps": Entry(code("NVlabs train.py, G_opt_kwargs/D_opt_kwargs eps=1e-8")),
    "fp16_res": Entry(code("NVlabs train.py, num_fp16_res = 4"), {"tiny": TINY}),
    "precision": Entry(choice("bfloat16 for the --fp16-res layers: float16's range needs conv_clamp and still "
                              "overflows more easily; bfloat16 needs no loss scaling"),
                       deviation="NVlabs computes those layers in float16", restore="--precision fp16"),
    "conv_clamp": Entry(code("NVlabs train.py, conv_clamp = 256"), {"tiny": TINY}),
    "seed": Entry(code("NVlabs train.py, --seed default 0")),
    "batch_gpu": Entry(code("NVlabs train.py --batch-gpu: rows per gradient-accumulation round; none: the "
                            "per-process batch in one round, as NVlabs' default")),
    "metrics": Entry(choice("no FID at snapshots unless asked: it needs the Inception weights file and minutes "
                            "per snapshot"),
                     deviation="NVlabs computes fid50k_full at every snapshot by default",
                     restore="--metrics fid50k_full"),
    "fid_num": Entry(code("NVlabs metrics fid50k_full: 50000 generated images")),
    "aug": Entry(code("NVlabs train.py --aug default 'ada' (every cfg)"),
                 {"paper": paper("alphaGAN appendix .1.2: StyleGAN2's config-f, which has no augmentation "
                                 "('noaug')"),
                  "tiny": choice("tiny preset: 'noaug', its ~1 kimg runs could move ADA's p by 1/500 at most")}),
    "augment_p": Entry(code("NVlabs training_loop.py augment_p = 0 (the initial p; --p sets it with --aug fixed)"),
                       deviation="NVlabs accepts --p with --aug fixed only; here also with --aug ada, as the "
                                 "initial p its training loop supports",
                       restore="leave --p out with --aug ada"),
    "ada_target": Entry(code("NVlabs train.py, --aug ada: ada_target = 0.6")),
    "ada_kimg": Entry(code("NVlabs training_loop.py, ada_kimg = 500")),
    "ada_interval": Entry(code("NVlabs training_loop.py, ada_interval = 4")),
    "augpipe": Entry(code("NVlabs train.py --augpipe default 'bgc'")),
    "mirror": Entry(code("NVlabs train.py --mirror default false"),
                    deviation="NVlabs doubles the dataset with the mirrored copies; here each drawn image is "
                              "mirrored with probability 1/2 (the same distribution of images)",
                    restore="none needed (same distribution); --mirror 1 where NVlabs' runs pass --mirror=1 "
                            "(FFHQ)"),
    # the run's context (not TrainConfig fields)
    "processes": Entry(choice("the torchrun world size (1 without torchrun); --batch is the total over them, "
                              "as NVlabs' --batch")),
    "data": Entry(choice("--data, the LMDB trained on")),
    "genotype_source": Entry(choice("--genotype: a genotype file, 'stylegan2', or a published name "
                                    "(docs/genotypes.md)")),
}

OPTIONS = {"augment_p": "--p", "ada_target": "--target"}  # fields whose option is not --<field-name>


def train_record(config, overrides, context, cpu=False):
    """config.json of a retraining run: every ``TrainConfig`` value and the ``context`` values with
    their sources; ``overrides`` are the options the user gave (field -> value), ``cpu`` says the
    run turned reduced precision off itself."""
    options = {name: OPTIONS.get(name, "--" + name.replace("_", "-")) for name in overrides}
    forced = {"fp16_res": choice("0 on the CPU, where reduced precision is slower")} if cpu else {}
    return sourced({**config.to_dict(), **context}, TABLE, preset=config.cfg, from_command_line=options,
                   forced=forced)
