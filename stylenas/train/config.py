"""Training configurations: NVlabs stylegan2-ada-pytorch's ``--cfg`` presets and a tiny one.

``CFG_SPECS`` holds NVlabs' values (train.py, ``cfg_specs``): total batch over all processes
(``mb``), minibatch-stddev group (``mbstd``), feature-map multiplier (``fmaps``: channel_base =
fmaps * 32768, channel_max 512), Adam learning rate (``lrate``, betas (0, 0.99), eps 1e-8), R1
gamma, EMA half-life in kimg (``ema``) and its ramp-up, mapping depth (``map``). ``auto`` derives
them from the resolution and the process count as NVlabs does. ``paper`` is the alphaGAN paper's
retraining (supplementary material, "Experiments on StyleGAN2 search space"): "the config-f
configuration in StyleGAN2", without the path-length regulariser, mini-batch 8 on 4 GPUs (CelebA,
LSUN church) or 4 on 8 GPUs (FFHQ). Read per GPU, both give 32 in all, config-f's own batch, so the
preset takes config-f (StyleGAN2's ``config-f``: 512-channel widths at every resolution of the data,
batch 32, mbstd group 4, lr 0.002, gamma 10, EMA 10 kimg, 8 mapping layers) with path length off;
``--batch-gpu 8`` (or 4) repeats the paper's per-GPU rounds on fewer GPUs. ``tiny`` is ours, for the
CPU tests and ``make demo``.

Deliberate difference: every preset keeps 8 mapping layers (NVlabs' ``auto`` uses 2) because a
searched genotype chooses among the latents W_1..W_8 of an 8-layer mapping network.

Augmentation (ADA, ``augment.py``): ``--aug ada`` with the ``bgc`` pipe and target 0.6 for NVlabs'
presets, as NVlabs' train.py defaults for every cfg; ``noaug`` for ``paper`` (the alphaGAN paper
retrains with config-f, which has no augmentation) and for ``tiny`` (its runs of about 1 kimg could
move ADA's p by at most 1 / 500: augmentation would cost time and never engage). ``--mirror``
defaults to off for every preset, as NVlabs' (its FFHQ examples pass ``--mirror=1``).

``resolve_config(cfg, resolution, world_size, **overrides) -> TrainConfig``: the preset's
values, then every override that is not None (``batch``, ``gamma``, ``kimg``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

CFG_NAMES = ("stylegan2", "paper256", "paper512", "paper1024", "auto", "paper", "tiny")
CFG_SPECS = {
    # NVlabs stylegan2-ada-pytorch train.py (ref_gpus: the GPU count NVlabs tuned for)
    "stylegan2": dict(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": dict(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None,
                     map=8),
    "paper512": dict(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None,
                     map=8),
    "paper1024": dict(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None,
                      map=8),
    # alphaGAN paper (supplementary): config-f without path length; our map 8 keeps W_1..W_8
    "paper": dict(ref_gpus=4, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8,
                  pl_weight=0),
    "auto": dict(ref_gpus=-1, kimg=25000, mb=-1, mbstd=-1, fmaps=-1, lrate=-1, gamma=-1, ema=-1, ramp=0.05, map=8),
}
NVLABS_SNAP_KIMG = 200  # NVlabs: a snapshot every 50 ticks of 4 kimg
NOAUG_CFGS = ("paper", "tiny")  # presets without augmentation (see the module docstring)
AUG_MODES = ("noaug", "ada", "fixed")
AUGPIPE_NAMES = ("blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc")


@dataclass
class TrainConfig:
    cfg: str
    resolution: int
    batch: int  # total over all processes
    mbstd_group: int
    channel_base: int
    channel_max: int
    lr: float
    gamma: float
    ema_kimg: float
    ema_rampup: float | None
    kimg: float
    snap: float  # kimg between snapshots
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    mixing: float = 0.9
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    adam_betas: tuple = (0.0, 0.99)
    adam_eps: float = 1e-8
    fp16_res: int = 4  # resolutions (from the top) computed in reduced precision on a GPU
    precision: str = "bf16"  # bf16 | fp16, for those resolutions
    conv_clamp: float | None = 256.0
    seed: int = 0
    batch_gpu: int | None = None  # rows per round of gradient accumulation (None: the per-process batch)
    metrics: str = "none"  # fid50k_full | none
    fid_num: int = 50000
    aug: str = "noaug"  # noaug | ada | fixed (resolve_config sets the preset's; a config without it had none)
    augment_p: float = 0.0  # --p: the fixed p, or ADA's initial p
    ada_target: float = 0.6  # ADA: target of the mean sign of D's real logits
    ada_kimg: float = 500.0  # ADA: kimg for p to move by 1
    ada_interval: int = 4  # ADA: steps between adjustments
    augpipe: str = "bgc"
    mirror: bool = False  # x-flip half the real images (data.py)

    def to_dict(self):
        data = asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in names}
        data["adam_betas"] = tuple(data.get("adam_betas", (0.0, 0.99)))
        return cls(**data)

    # Values that change the networks or the training trajectory: a resume must keep them.
    STRUCTURAL = ("cfg", "resolution", "batch", "mbstd_group", "channel_base", "channel_max", "lr", "gamma",
                  "ema_kimg", "ema_rampup", "z_dim", "w_dim", "mapping_layers", "pl_weight", "pl_decay",
                  "pl_batch_shrink", "mixing", "g_reg_interval", "d_reg_interval", "adam_betas", "adam_eps",
                  "fp16_res", "precision", "conv_clamp", "seed", "aug", "augment_p", "ada_target", "ada_kimg",
                  "ada_interval", "augpipe", "mirror")


def resolve_config(cfg, resolution, world_size=1, **overrides):
    if cfg not in CFG_NAMES:
        raise ValueError(f"--cfg must be one of {', '.join(CFG_NAMES)}, got {cfg!r}")
    if cfg == "tiny":
        values = dict(batch=8, mbstd_group=4, channel_base=512, channel_max=32, lr=0.0025,
                      gamma=0.0002 * resolution ** 2 / 8, ema_kimg=0.05, ema_rampup=0.05,
                      kimg=1.0, snap=0.25, z_dim=32, w_dim=32, fp16_res=0, conv_clamp=None)
    else:
        spec = dict(CFG_SPECS[cfg])
        if cfg == "auto":  # NVlabs' heuristics, from the resolution and the process count
            spec["mb"] = max(min(world_size * min(4096 // resolution, 32), 64), world_size)
            spec["mbstd"] = min(spec["mb"] // world_size, 4)
            spec["fmaps"] = 1 if resolution >= 512 else 0.5
            spec["lrate"] = 0.002 if resolution >= 1024 else 0.0025
            spec["gamma"] = 0.0002 * resolution ** 2 / spec["mb"]
            spec["ema"] = spec["mb"] * 10 / 32
        values = dict(batch=spec["mb"], mbstd_group=spec["mbstd"], channel_base=int(spec["fmaps"] * 32768),
                      channel_max=512, lr=spec["lrate"], gamma=spec["gamma"], ema_kimg=spec["ema"],
                      ema_rampup=spec["ramp"], kimg=spec["kimg"], snap=NVLABS_SNAP_KIMG, mapping_layers=spec["map"])
        if "pl_weight" in spec:
            values["pl_weight"] = spec["pl_weight"]
    values["aug"] = "noaug" if cfg in NOAUG_CFGS else "ada"
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    check_augment_options(values["aug"], given)
    config = TrainConfig(cfg=cfg, resolution=resolution, **values)
    check_config(config)
    return config


def check_augment_options(aug, given):
    """NVlabs train.py's rules for the augmentation options the user gave; --p is also accepted with
    --aug ada, as ADA's initial p (NVlabs' training loop takes one; its command line does not)."""
    if aug not in AUG_MODES:
        raise ValueError(f"--aug must be one of {', '.join(AUG_MODES)}, got {aug!r}")
    if aug == "fixed" and "augment_p" not in given:
        raise ValueError("--aug fixed requires --p")
    if aug == "noaug":
        named = [option for field, option in (("augment_p", "--p"), ("augpipe", "--augpipe"),
                                              ("ada_target", "--target"), ("ada_kimg", "--ada-kimg")) if field in given]
        if named:
            raise ValueError(f"{', '.join(named)} cannot be given with --aug noaug (the default of --cfg "
                             f"{' and '.join(NOAUG_CFGS)}: add --aug ada or --aug fixed)")
    if aug != "ada":
        for field, option in (("ada_target", "--target"), ("ada_kimg", "--ada-kimg")):
            if field in given:
                raise ValueError(f"{option} can only be given with --aug ada")


def check_config(config):
    def positive(name, strict=True):
        value = getattr(config, name)
        if not (value > 0 if strict else value >= 0):
            raise ValueError(f"--{name.replace('_', '-')} must be {'positive' if strict else '>= 0'}, got {value}")

    for name in ("batch", "kimg", "snap", "lr", "ema_kimg", "mbstd_group", "fid_num"):
        positive(name)
    for name in ("gamma", "pl_weight", "fp16_res"):
        positive(name, strict=False)
    for name in ("g_reg_interval", "d_reg_interval", "pl_batch_shrink"):
        if int(getattr(config, name)) != getattr(config, name) or getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(config, name)}")
    if config.batch_gpu is not None:
        positive("batch_gpu")
    if not 0 <= config.mixing <= 1:
        raise ValueError(f"--mixing is a probability in [0, 1], got {config.mixing}")
    if config.metrics not in ("fid50k_full", "none"):
        raise ValueError(f"--metrics must be fid50k_full or none, got {config.metrics!r}")
    if config.precision not in ("bf16", "fp16"):
        raise ValueError(f"--precision must be bf16 or fp16, got {config.precision!r}")
    if not 0 <= config.augment_p <= 1:
        raise ValueError(f"--p is a probability in [0, 1], got {config.augment_p}")
    if not 0 <= config.ada_target <= 1:
        raise ValueError(f"--target must be in [0, 1], got {config.ada_target}")
    positive("ada_kimg")
    if config.augpipe not in AUGPIPE_NAMES:
        raise ValueError(f"--augpipe must be one of {', '.join(AUGPIPE_NAMES)}, got {config.augpipe!r}")
    if isinstance(config.mapping_layers, bool) or not isinstance(config.mapping_layers, int) \
            or config.mapping_layers < 1:
        raise ValueError(f"mapping_layers must be a positive integer, got {config.mapping_layers!r}")
