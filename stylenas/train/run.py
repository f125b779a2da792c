"""The retraining run behind ``stylenas train`` / ``scripts/train_stylegan2.py``: data, genotype,
configuration, the loop, snapshots, resume, FID.

Output folder (rank 0 writes it):
  checkpoint.pt                    the resume point, rewritten atomically at every snapshot
  network-snapshot-<kimg>.pt       a checkpoint kept at every snapshot (NVlabs' naming; decimals
                                   when --snap is fractional); network-snapshot-best.pt by FID
  log.jsonl                        one line per snapshot: losses, R1, path length, D accuracy,
                                   s/kimg, s/step, memory, learning rates, NaN count, FID
  stats.jsonl                      one line per tick (--tick kimg) in stylegan2-ada-pytorch's layout and
                                   key names: {"Loss/G/loss": {"num", "mean", "std"}, ..., "timestamp"}
  metric-fid50k_full.jsonl         one line per FID in NVlabs' layout (results, snapshot_pkl, ...)
  log.txt                          the console (one line per tick), appended on --resume
  events.out.tfevents.*            TensorBoard, only when the tensorboard package is installed
  losses.png                       the tick values and the FID over the run (raw and smoothed)
  samples/reals.png, samples/fakes<kimg>.png, samples/fakes<kimg>-trunc0.7.png
  genotype.json, config.json       what is being trained (config.json: every setting and its source)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import torch

from ..config_sources import write_config
from ..datasets import DatasetError, LMDBImages
from ..nn.networks import check_resolution
from ..runs import RunFolder, StopSignals, progress_seconds, resuming
from ..search.genotype import Genotype, GenotypeError
from ..search.genotype import load_genotype as load_named_or_file
from .checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig, resolve_config
from .data import TrainingBatches
from .distributed import init_distributed
from .runlog import (Console, KeepBest, Progress, RunLog, TickOutputs, TickStats, cpu_memory_gb, merge_moments,
                     metric_record, plot_series, save_image_grid, snapshot_name, stats_record, tick_line,
                     tick_series)
from .sources import train_record
from .stylegan2 import StyleGAN2Trainer, TrainError, build_networks, fixed_latents, memory_gb

CHECKPOINT = "checkpoint.pt"
GRID_SIZE = 32
LOGGED = ("loss_G", "loss_D", "r1_penalty", "pl_length", "score_real", "score_fake", "D_accuracy", "fid")


@dataclass
class TrainOptions:
    data: str
    genotype: str
    outdir: str
    cfg: str = "auto"
    resolution: int | None = None
    resume: bool = False
    device: str = "auto"
    workers: int = 2
    fid_stats: str | None = None
    inception: str | None = None
    tick: float = 4.0  # kimg between console lines and stats.jsonl records (NVlabs' --tick)
    init: str | None = None  # --init: start from these G, D, G_ema weights (ours, NVlabs, rosinality)
    overrides: dict = field(default_factory=dict)  # TrainConfig fields from the command line


def open_data(path, resolution):
    try:
        return LMDBImages(path, resolution=resolution)
    except DatasetError as error:
        raise TrainError(f"--data: {error}") from None


def load_genotype(spec, data, resolution):
    """(Genotype, dataset) for ``--genotype stylegan2|NAME|PATH`` (names: ``search.load_genotype``);
    the data must store the genotype's resolution."""
    if spec == "stylegan2":
        if resolution is not None:
            try:
                check_resolution(resolution)
            except ValueError as error:
                raise TrainError(f"--resolution: {error}") from None
        dataset = open_data(data, resolution)
        return Genotype.original(dataset.resolution), dataset
    try:
        genotype = load_named_or_file(spec)
    except GenotypeError as error:
        raise TrainError(f"--genotype: {error}") from None
    if resolution is not None and resolution != genotype.resolution:
        raise TrainError(f"--resolution {resolution} differs from the genotype's {genotype.resolution} px ({spec})")
    try:
        dataset = LMDBImages(data, resolution=genotype.resolution)
    except DatasetError as error:
        if "is not stored" in str(error):
            raise TrainError(f"--genotype {spec} is for {genotype.resolution} px images, but {error}") from None
        raise TrainError(f"--data: {error}") from None
    return genotype, dataset


def check_resume(state, config, genotype, path):
    saved = TrainConfig.from_dict(state["config"]).to_dict()
    now = config.to_dict()
    changed = [k for k in TrainConfig.STRUCTURAL if saved.get(k) != now.get(k)]
    if changed:
        raise TrainError(f"--resume: {path} was trained with another configuration: " + ", ".join(
            f"{k}={saved.get(k)!r} (now {now.get(k)!r})" for k in changed))
    saved_layers = [(layer["name"], layer.get("op"), layer["w"]) for layer in state["genotype"]["layers"]]
    now_layers = [(layer["name"], layer.get("op"), layer["w"]) for layer in genotype.layers]
    if saved_layers != now_layers or state["genotype"].get("torgb_w") != genotype.torgb_w:
        raise TrainError(f"--resume: {path} was trained from another genotype (give the same --genotype)")


def train(options: TrainOptions, log=None):
    """Run (or resume) a training; returns the final checkpoint's path."""
    dist = init_distributed(options.device)
    log = log or (lambda line: click.echo(line, err=True))
    say = Console(log) if dist.is_main else (lambda line: None)  # also into OUTDIR/log.txt once opened
    folder = RunFolder(options.outdir, enabled=dist.is_main, log=say)  # one run per folder
    options = replace(options, resume=resuming(options.resume, Path(options.outdir) / CHECKPOINT))
    try:
        with StopSignals(say if dist.is_main else (lambda line: None)) as stop:
            return _train(options, dist, say, folder, stop)
    except BaseException as error:  # why the run ended goes into log.txt too (the command prints it)
        if dist.is_main:
            kind = "error" if isinstance(error, (TrainError, CheckpointError)) else type(error).__name__
            say.record(f"{kind}: {error}")
        raise
    finally:
        folder.release()
        if dist.is_main:
            say.close()
        dist.close()


def _train(options, dist, say, folder, stop):
    outdir = Path(options.outdir)
    if not options.tick > 0:
        raise TrainError(f"--tick must be a positive number of kimg, got {options.tick:g}")
    files = {"checkpoint": outdir / CHECKPOINT, "log": outdir / "log.jsonl", "samples": outdir / "samples"}
    genotype, dataset = load_genotype(options.genotype, options.data, options.resolution)
    overrides = dict(options.overrides)
    if dist.device.type != "cuda":
        overrides["fp16_res"] = 0  # reduced precision pays on a GPU; on the CPU it is slower
    try:
        config = resolve_config(options.cfg, genotype.resolution, dist.world_size, **overrides)
        local_batch = dist.local_batch(config.batch)
    except ValueError as error:
        raise TrainError(str(error)) from None
    if len(dataset) < config.batch:
        raise TrainError(f"--data: {options.data} holds {len(dataset)} images, fewer than one batch ({config.batch})")
    if config.metrics != "none":  # the Inception weights are needed before any work starts
        from ..metrics import find_weights, InceptionWeightsError

        try:
            find_weights(options.inception, download=False)
        except InceptionWeightsError as error:
            raise TrainError(f"--metrics {config.metrics}: {error}") from None

    torch.manual_seed(config.seed)
    G, D = build_networks(genotype, config)
    trainer = StyleGAN2Trainer(G, D, config, dist)
    trainer.stats = TickStats()  # its per-step accumulator, also keeping the second moments stats.jsonl reports
    resumed_ticks = {"tick": 0, "total_sec": 0.0}
    best = KeepBest(outdir / "network-snapshot-best.pt", "fid", "min")
    if options.init and not options.resume:  # a resumed run holds its own weights
        from .checkpoint import init_networks

        init_networks(options.init, genotype, {"G": trainer.G, "D": trainer.D, "G_ema": trainer.G_ema})
        say(f"initialised G, D and G_ema from {options.init}")

    folder.acquire()  # every option is checked: from here on this run owns the folder
    if options.resume:
        try:
            state = load_checkpoint(files["checkpoint"], map_location=dist.device, kind="stylegan2")
        except CheckpointError as error:
            raise TrainError(f"--resume: {error}") from None
        check_resume(state, config, genotype, files["checkpoint"])
        images = state.get("data", {}).get("images")
        if images is not None and images != len(dataset):
            raise TrainError(f"--resume: {files['checkpoint']} was trained on {images} images; --data "
                             f"{options.data} holds {len(dataset)} (the batches are drawn by position)")
        trainer.load_state_dict(state)
        resumed_ticks.update(state.get("ticks", {}))
        best.load_state_dict(state.get("best", {}))
        if len(state.get("rng", [])) == dist.world_size:
            restore_rng(state["rng"][dist.rank])
        say(f"resumed {files['checkpoint']} at kimg {trainer.nimg / 1000:g} (step {trainer.step_index})")
    elif files["checkpoint"].exists():
        raise TrainError(f"{outdir} already holds a training run ({CHECKPOINT}); use --resume or another --outdir")
    dist.barrier()  # every process has read the checkpoint before rank 0 rewrites anything

    total_nimg = int(round(config.kimg * 1000))
    snap_nimg = config.snap * 1000
    runlog = outputs = None
    if dist.is_main:
        files["samples"].mkdir(parents=True, exist_ok=True)
        say.open(outdir / "log.txt", append=options.resume)
        genotype.save(outdir / "genotype.json")
        context = {"processes": dist.world_size, "data": str(options.data), "genotype_source": str(options.genotype)}
        write_config(outdir / "config.json", train_record(config, options.overrides, context,
                                                          cpu=dist.device.type != "cuda"))
        runlog = RunLog(files["log"], resume_at=trainer.nimg / 1000 if options.resume else None)
        outputs = TickOutputs(outdir, resume_kimg=trainer.nimg / 1000 if options.resume else None)
        if not options.resume:
            reals = torch.stack([dataset[i] for i in range(min(GRID_SIZE, len(dataset)))])
            save_image_grid(reals, files["samples"] / "reals.png", nrow=8)

    ref_stats, inception = None, None
    if config.metrics == "fid50k_full":  # every process scores a share of the generated images
        from ..metrics import InceptionV3FID, load_stats
        from .generate import reference_stats

        inception = InceptionV3FID(weights=options.inception).to(dist.device)
        if dist.is_main:
            ref_stats = load_stats(options.fid_stats) if options.fid_stats else reference_stats(
                options.data, config.resolution, dist.device, inception=inception, log=say)
        ref_stats = dist.broadcast_object(ref_stats)

    say(f"training {genotype.paradigm} genotype at {config.resolution} px on {dist.world_size} process(es) "
        f"({dist.device}): cfg {config.cfg}, batch {config.batch} ({local_batch} per process), "
        f"{config.kimg:g} kimg, snapshot every {config.snap:g} kimg, gamma {config.gamma:g}, "
        f"pl weight {config.pl_weight:g}, mixing {config.mixing:g}, lr {config.lr:g}")
    batches = TrainingBatches(dataset, config.batch, dist, seed=config.seed, start_step=trainer.step_index,
                              num_workers=options.workers, mirror=config.mirror)
    grid_z = fixed_latents(config, GRID_SIZE).to(dist.device)
    progress = Progress(config.kimg, start=trainer.nimg / 1000)
    tick_start, tick_nimg, tick_steps = time.perf_counter(), trainer.nimg, 0
    tick_images = options.tick * 1000
    now = time.perf_counter()
    ticks = {"index": int(resumed_ticks["tick"]), "start": now, "nimg": trainer.nimg,
             "next": (trainer.nimg // tick_images + 1) * tick_images, "maintenance": 0.0, "ended": None,
             "run_start": now - float(resumed_ticks["total_sec"])}
    snap_moments = {}  # per-step statistics of the ticks since the last snapshot
    last_print = time.perf_counter()
    next_snap = (int(trainer.nimg // snap_nimg) + 1) * snap_nimg

    def end_tick():
        """NVlabs' tick: one stats.jsonl record and console line; every process takes part."""
        now = time.perf_counter()
        moments = trainer.stats.collect(dist)
        merge_moments(snap_moments, moments)
        if dist.is_main:
            total = now - ticks["run_start"]
            scalars = {"Progress/tick": ticks["index"], "Progress/kimg": trainer.nimg / 1000, "Timing/total_sec": total,
                       "Timing/sec_per_tick": now - ticks["start"],
                       "Timing/sec_per_kimg": (now - ticks["start"]) / max((trainer.nimg - ticks["nimg"]) / 1000, 1e-12),
                       "Timing/maintenance_sec": ticks["maintenance"], "Timing/total_hours": total / 3600,
                       "Timing/total_days": total / 86400, "Resources/cpu_mem_gb": cpu_memory_gb()}
            if dist.device.type == "cuda":
                scalars["Resources/peak_gpu_mem_gb"] = memory_gb(dist.device)
            pipe = getattr(trainer, "augment_pipe", None)
            if pipe is not None and getattr(pipe, "p", None) is not None:
                scalars["Progress/augment"] = float(pipe.p)
            record = stats_record(moments, scalars)
            outputs.tick(record, trainer.nimg)
            say(tick_line(record))
        ticks.update(index=ticks["index"] + 1, ended=time.perf_counter(),
                     next=(trainer.nimg // tick_images + 1) * tick_images)

    def snapshot():
        nonlocal tick_start, tick_nimg, tick_steps
        kimg = trainer.nimg / 1000
        elapsed = time.perf_counter() - tick_start
        record = {"kimg": kimg, "step": trainer.step_index,
                  **{name: m[1] / m[0] for name, m in sorted(snap_moments.items()) if m[0]}}
        snap_moments.clear()
        record.update({"s_per_kimg": elapsed / max((trainer.nimg - tick_nimg) / 1000, 1e-12),
                       "s_per_step": elapsed / max(tick_steps, 1), "memory_gb": memory_gb(dist.device),
                       **trainer.learning_rates(), "nan_count": int(trainer.nan_count),
                       "pl_mean": float(trainer.pl_mean), "processes": dist.world_size})
        rngs = dist.gather_objects(capture_rng())
        if ref_stats is not None:
            from .generate import fid_of_generator

            fid_start = time.perf_counter()
            record["fid"] = fid_of_generator(trainer.G_ema, ref_stats, config.fid_num, dist.device,
                                             inception=inception, dist=dist)
            fid_seconds = time.perf_counter() - fid_start
        if dist.is_main:
            with torch.no_grad():
                save_image_grid(trainer.G_ema(grid_z, noise_mode="const"), files["samples"] / f"fakes{kimg:09.3f}.png")
                save_image_grid(trainer.G_ema(grid_z, truncation_psi=0.7, noise_mode="const"),
                                files["samples"] / f"fakes{kimg:09.3f}-trunc0.7.png")
            state = {"kind": "stylegan2", **trainer.state_dict(), "rng": rngs,
                     "ticks": {"tick": ticks["index"], "total_sec": time.perf_counter() - ticks["run_start"]}, "genotype": genotype.to_dict(),
                     "config": config.to_dict(), "data": {"path": str(options.data), "images": len(dataset),
                                                          "position": trainer.step_index}}
            if ref_stats is not None:
                best.update(record["fid"], state, save_checkpoint)
            state["best"] = best.state_dict()
            runlog.write(record)  # before the checkpoint: a kill in between drops this line on resume
            if ref_stats is not None:
                outputs.metric(metric_record(config.metrics, record["fid"], fid_seconds, dist.world_size,
                                             snapshot_name(kimg), kimg, {"num_images": config.fid_num}), trainer.nimg)
            save_checkpoint(state, outdir / snapshot_name(kimg))
            save_checkpoint(state, files["checkpoint"])
            plot_series(tick_series(outputs.stats.records()) + [{"kimg": r["kimg"], "fid": r["fid"]}
                                                                for r in runlog.records() if "fid" in r],
                        LOGGED, outdir / "losses.png")
            say(progress.line(kimg, **{k: record[k] for k in ("loss_G", "loss_D", "fid") if k in record}))
        dist.barrier()
        tick_start, tick_nimg, tick_steps = time.perf_counter(), trainer.nimg, 0

    if trainer.nimg >= total_nimg and options.resume:
        say(f"nothing to do: {files['checkpoint']} is at kimg {trainer.nimg / 1000:g} >= --kimg {config.kimg:g}")
    while trainer.nimg < total_nimg:
        step, reals = next(batches)
        assert step == trainer.step_index
        trainer.step(reals)
        tick_steps += 1
        stopping = stop.requested(dist) and trainer.nimg < total_nimg  # SIGINT/SIGTERM: checkpoint, then exit
        snapshot_due = trainer.nimg >= next_snap or trainer.nimg >= total_nimg or stopping
        if snapshot_due or trainer.nimg >= ticks["next"]:
            end_tick()
        if snapshot_due:
            snapshot()
            if stopping:
                stop.interrupt(files["checkpoint"])
            while next_snap <= trainer.nimg:
                next_snap += snap_nimg
        elif dist.is_main and time.perf_counter() - last_print > progress_seconds():
            say(progress.line(trainer.nimg / 1000))
            last_print = time.perf_counter()
        if ticks["ended"] is not None:  # the next tick's clock starts after the snapshot (NVlabs' maintenance)
            now = time.perf_counter()
            ticks.update(start=now, nimg=trainer.nimg, maintenance=now - ticks["ended"], ended=None)
    if dist.is_main:
        runlog.close()
        outputs.close()
        say(f"done: {files['checkpoint']} (kimg {trainer.nimg / 1000:g}, {int(trainer.nan_count)} NaN/Inf gradient "
            f"entries cleaned: NaN to 0, Inf to +-1e5)")
    return files["checkpoint"]
