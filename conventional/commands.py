"""The conventional-GAN commands: ``stylenas train-conventional``, ``stylenas search-conventional``,
``stylenas bench-conventional`` (also ``scripts/train_conventional.py``, ``scripts/search_conventional.py``,
``scripts/bench_conventional.py``)."""

from __future__ import annotations

import click

from ..io import dump_json
from ..runs import RunCommand, RunFolder, StopSignals, is_main_process


def _floats(text, what, count):
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected {count} comma-separated numbers, got {text!r}", param_hint=what) from None
    if len(values) != count:
        raise click.BadParameter(f"expected {count} comma-separated numbers, got {text!r}", param_hint=what)
    return values


def retrain_sources(search_space):
    """The sources table of retraining a genotype of ``search_space``: its method's RETRAIN_SOURCES
    (None: the trainer's common table)."""
    from .searchers import agan, alphagan, autogan_sources, degas, dggan

    return {"autogan": autogan_sources.RETRAIN_SOURCES, "agan": agan.RETRAIN_SOURCES,
            "alphagan_conv": alphagan.RETRAIN_SOURCES, "degas": degas.RETRAIN_SOURCES,
            "dggan": dggan.RETRAIN_SOURCES}.get(search_space)


@click.command("train-conventional", cls=RunCommand)
@click.option("--genotype", required=True,
              help="A genotype.json of a conventional search, or autogan_a|autogan_b|autogan_c|alphagan_l|alphagan_s.")
@click.option("--data", required=True, type=click.Path(), help="Training LMDB (e.g. from prepare-data --from cifar10).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="G steps [default: paper 50k at 32 px, 80k at 48 px; tiny 20].")
@click.option("--preset", type=click.Choice(["paper", "tiny"]), default="paper", show_default=True,
              help="paper: the papers' sizes and batches; tiny: a CPU-minutes configuration.")
@click.option("--loss", type=click.Choice(["hinge", "wgan-gp", "ctgan"]), default=None,
              help="[default: ctgan for DEGAS genotypes, else hinge]")
@click.option("--resolution", type=int, default=None, help="Which size of the LMDB [default: the largest].")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Adam learning rate of G and D.")
@click.option("--betas", default=None, help="Adam betas 'b1,b2' [default: 0,0.9; 0.5,0.9 at 48 px].")
@click.option("--lr-schedule", type=click.Choice(["constant", "linear"]), default=None,
              help="constant, as AutoGAN's and alphaGAN's commands (and AGAN's paper) run it, or linear decay to 0 "
                   "[default: constant for autogan, alphagan and agan genotypes, else linear].")
@click.option("--gf-dim", type=click.IntRange(1), default=None,
              help="G channels [preset: 256; tiny 8].")
@click.option("--df-dim", type=click.IntRange(1), default=None,
              help="D channels [preset: 128; 256 for AGAN genotypes (its section 4.3); tiny 8].")
@click.option("--g-batch", type=click.IntRange(1), default=None, help="G batch [preset: 128].")
@click.option("--d-batch", type=click.IntRange(1), default=None, help="D batch [preset: 64].")
@click.option("--snap", type=click.IntRange(1), default=None,
              help="G steps between checkpoints, snapshots and metrics [preset: 2500].")
@click.option("--metrics", default="", help="Comma list of is,fid measured at every checkpoint on G_ema.")
@click.option("--fid-stats", type=click.Path(dir_okay=False), default=None,
              help="Training-set statistics (.npz of stylenas fid --save-stats) for --metrics fid.")
@click.option("--metric-num", type=click.IntRange(1), default=None, help="Samples per metric [preset: 50000].")
@click.option("--inception", type=click.Path(dir_okay=False), default=None, help="FID Inception weights file.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (under torchrun: per process).")
@click.option("--resume", is_flag=True, help="Continue the run in OUTDIR from its checkpoint.pt.")
@click.option("--init", type=click.Path(dir_okay=False), default=None,
              help="Start G and D from these weights instead of random ones (e.g. final.pt of a DGGAN search).")
def train_conventional_command(genotype, data, outdir, steps, preset, loss, resolution, lr, betas, lr_schedule, gf_dim,
                               df_dim, g_batch, d_batch, snap, metrics, fid_stats, metric_num, inception, seed, device,
                               resume, init):
    """Retrain a conventional genotype against the SNGAN/AutoGAN discriminator (hinge, n_critic 5,
    Adam 2e-4, EMA of G) into OUTDIR/checkpoint.pt; OUTDIR/config.json records every setting with
    its source. Multi-GPU: torchrun
    --nproc_per_node N scripts/train_conventional.py ..."""
    from .train import TrainConfig, TrainError, run_training

    wanted = tuple(m for m in metrics.replace(" ", "").split(",") if m)
    unknown = [m for m in wanted if m not in ("is", "fid")]
    if unknown:
        raise click.BadParameter(f"unknown metric {unknown[0]!r}; expected is, fid", param_hint="--metrics")
    overrides = {k: v for k, v in (("g_batch", g_batch), ("d_batch", d_batch)) if v}
    config = TrainConfig(genotype, data, outdir, preset=preset, steps=steps, loss=loss, resolution=resolution, lr=lr,
                         betas=_floats(betas, "--betas", 2) if betas else None, seed=seed, device=device,
                         resume=resume, snap=snap, metrics=wanted, fid_stats=fid_stats, metric_num=metric_num,
                         inception=inception, overrides=overrides, init=init, lr_schedule=lr_schedule,
                         gf_dim=gf_dim, df_dim=df_dim)
    try:
        with RunFolder(outdir, enabled=is_main_process()), StopSignals() as stop:  # one run per folder
            run_training(config, stop=stop, sources=retrain_sources)
    except (TrainError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error))


@click.command("search-conventional", cls=RunCommand)
@click.option("--method", required=True, type=click.Choice(["alphagan", "degas", "autogan", "agan", "dggan"]),
              help="alphagan: alphaGAN on AutoGAN-style cells; degas: DEGAS (GLO) on the whole generator; "
                   "autogan: AutoGAN (RL, multi-level); agan: AGAN (RL, G and D modules); dggan: DGGAN "
                   "(grows ProgGAN G and D from 8 px, top-K greedy).")
@click.option("--data", required=True, type=click.Path(), help="LMDB (CIFAR-10 32 px or STL-10 48 px).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Search folder.")
@click.option("--preset", default=None,
              help="alphagan: s | l | tiny [s]; degas: cifar | stl | tiny [cifar at 32 px, stl otherwise]; "
                   "autogan, agan: paper | tiny [paper]; dggan: paper | small | tiny [paper].")
@click.option("--iters", type=click.IntRange(0), default=None,
              help="Search iterations / epochs [preset]; dggan: training iterations of each child.")
@click.option("--resolution", type=int, default=None, help="Which size of the LMDB [default: the largest].")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--sample-every", type=click.IntRange(0), default=None, help="Iterations between sample grids [preset].")
@click.option("--resume", is_flag=True, help="Continue the search in OUTDIR.")
@click.option("--reward", type=click.Choice(["is", "fid"]), default="is", show_default=True,
              help="autogan: Inception Score, or FID against the training statistics (agan: IS).")
@click.option("--proxy", is_flag=True,
              help="autogan/agan/dggan: score with a random-weight Inception (CPU tests, demo); logged as a PROXY.")
@click.option("--inception", type=click.Path(dir_okay=False), default=None, help="FID Inception weights file.")
@click.option("--reward-num", type=click.IntRange(2), default=None,
              help="autogan/agan: samples per reward [preset: 5000 / 50000].")
@click.option("--ctrl-batch", type=click.IntRange(1), default=None,
              help="autogan: architectures per controller step [preset: 1]; their rewards spread over processes.")
@click.option("--baseline", type=click.Choice(["phase", "persistent"]), default=None,
              help="autogan: the REINFORCE baseline restarts every controller phase, as the authors' code [phase], "
                   "or one EMA over the whole search.")
@click.option("--child-steps", type=click.IntRange(1), default=None, help="agan: G steps of each child [preset: 5000].")
@click.option("--is-range", default=None, help="agan: 'IS_min,IS_max' of the shaped reward [1,11.24].")
@click.option("--top-k", type=click.IntRange(1), default=None, help="dggan: parents kept per step (K) [preset: 20].")
@click.option("--p", "--sample-p", "sample_p", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="dggan: probability of each (parent, action) child [preset: 0.4]. Under torchrun write "
              "--sample-p: torchrun's parser refuses --p.")
@click.option("--max-steps", type=click.IntRange(0), default=None,
              help="dggan: growing steps at most [default: until nothing can grow].")
@click.option("--final-iters", type=click.IntRange(0), default=None,
              help="dggan: further iterations of the best candidate [preset].")
@click.option("--fid-num", type=click.IntRange(2), default=None, help="dggan: samples a candidate's FID uses [preset].")
@click.option("--max-grown", type=click.IntRange(0), default=None,
              help="dggan: grown convs per network and resolution at most [preset: 3].")
@click.option("--n-critic", type=click.IntRange(1), default=None,
              help="alphagan: D steps per G step in the weight part [5, the authors' code; 1: Algorithm 1].")
@click.option("--betas", default=None,
              help="alphagan: Adam betas 'b1,b2' of the weights [0,0.9, the authors' code; 0,0.999: appendix .1.1.1].")
@click.option("--batches", type=click.Choice(["passes", "uniform"]), default=None,
              help="alphagan: batches as passes over each half without replacement [passes, the authors' loaders] "
                   "or drawn anew each time.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="degas: the weights' SGD learning rate [preset: 3e-1 cifar, 3e-2 stl; DARTS' 0.025 under the "
                   "other reading of the paper, see docs/conventional.md].")
@click.option("--arch-lr", type=click.FloatRange(0, min_open=True), default=None,
              help="degas: the alphas' Adam learning rate [preset: DARTS' 3e-4; the other reading: 3e-1 / 3e-2].")
@click.option("--rank-by", type=click.Choice(["fid_norm", "fid"]), default=None,
              help="dggan: rank children by FID over the ProgGAN baseline's at their resolution [fid_norm] or by "
                   "raw FID (every route then fills a resolution before doubling).")
@click.option("--base-net", type=click.Choice(["gan_zoo", "proggan"]), default=None,
              help="dggan: base networks as pytorch_GAN_zoo, the PyTorch ProgGAN the paper used [gan_zoo: He's gain "
                   "in every layer], or as tkarras' ProgGAN (gain 1 in toRGB and D's output, sqrt(2)/4 in G's "
                   "4x4 dense; strided minibatch stddev). Recorded in genotype.json.")
@click.option("--metrics", default="",
              help="alphagan/degas: comma list of is,fid of the derived architecture at every sample grid.")
@click.option("--fid-stats", type=click.Path(dir_okay=False), default=None,
              help="alphagan/degas: training-set statistics (.npz) for --metrics fid.")
@click.option("--metric-num", type=click.IntRange(2), default=5000, show_default=True,
              help="alphagan/degas: samples per metric.")
def search_conventional_command(method, data, outdir, preset, iters, resolution, seed, device, sample_every, resume,
                                reward, proxy, inception, reward_num, ctrl_batch, baseline, child_steps, is_range,
                                top_k, sample_p, max_steps, final_iters, fid_num, n_critic, betas, batches, metrics,
                                fid_stats, metric_num, max_grown, lr, arch_lr, rank_by, base_net):
    """Search a conventional generator; writes OUTDIR/genotype.json (retrain it with
    train-conventional --genotype OUTDIR/genotype.json), log.jsonl, alphas.png (autogan/agan:
    rewards.png), samples/ and search-state.pt (for --resume). autogan/agan spread the candidate
    rewards over the processes of torchrun --nproc_per_node N. dggan: also candidates.csv,
    fig3.png, final.pt and dggan-state.json; its children are trained on all torchrun processes."""
    given = dict(reward_num=reward_num, ctrl_batch=ctrl_batch, baseline=baseline, child_steps=child_steps,
                 is_range=is_range, top_k=top_k, p=sample_p, max_steps=max_steps, final_iters=final_iters,
                 fid_num=fid_num, max_grown=max_grown, rank_by=rank_by, base_net=base_net, n_critic=n_critic,
                 betas=betas, batches=batches, lr=lr, arch_lr=arch_lr, fid_stats=fid_stats, metrics=metrics or None)
    _refuse_options_of_other_methods(method, given)
    if method in ("autogan", "agan"):
        if method == "autogan":
            from .searchers.autogan import AutoGANConfig as Config, SearchError as RLSearchError, run_autogan as run
        else:
            from .searchers.agan import AGANConfig as Config, SearchError as RLSearchError, run_agan as run
        overrides = {k: v for k, v in (("reward_num", reward_num), ("ctrl_batch", ctrl_batch),
                                       ("child_steps", child_steps),
                                       ("baseline", baseline if method == "autogan" else None)) if v is not None}
        if is_range:
            overrides["is_min"], overrides["is_max"] = _floats(is_range, "--is-range", 2)
        config = Config(data, outdir, preset=preset or "paper", iters=iters, reward=reward, proxy=proxy,
                        inception=inception, resolution=resolution, seed=seed, device=device, resume=resume,
                        overrides=overrides)
        try:
            with RunFolder(outdir, enabled=is_main_process()), StopSignals() as stop:
                run(config, stop=stop)
        except (RLSearchError, ValueError, FileNotFoundError) as error:
            raise click.ClickException(str(error))
        return
    if method == "dggan":
        from .searchers.dggan import search_from_options

        overrides = {k: v for k, v in (("top_k", top_k), ("p", sample_p), ("child_iters", iters),
                                       ("max_steps", max_steps), ("final_iters", final_iters),
                                       ("max_grown", max_grown), ("rank_by", rank_by), ("base_net", base_net))
                     if v is not None}
        try:
            with RunFolder(outdir, enabled=is_main_process()), StopSignals() as stop:
                search_from_options(data, outdir, preset or "paper", resolution, seed, device, resume, proxy,
                                    inception, overrides, fid_num, log=lambda line: click.echo(line, err=True),
                                    stop=stop)
        except (ValueError, FileNotFoundError) as error:
            raise click.ClickException(str(error))
        return
    from .searchers.differentiable import SearchConfig, SearchError, run_search

    options = {k: v for k, v in (("n_critic", n_critic), ("betas", _floats(betas, "--betas", 2) if betas else None),
                                 ("batches", batches)) if v is not None}
    options.update({k: v for k, v in (("lr", lr), ("arch_lr", arch_lr)) if v is not None})

    wanted = tuple(m for m in metrics.replace(" ", "").split(",") if m)
    if any(m not in ("is", "fid") for m in wanted):
        raise click.BadParameter(f"expected is and/or fid, got {metrics!r}", param_hint="--metrics")
    config = SearchConfig(method, data, outdir, preset=preset, iters=iters, resolution=resolution, seed=seed,
                          device=device, sample_every=sample_every, resume=resume, metrics=wanted,
                          fid_stats=fid_stats, metric_num=metric_num, inception=inception, options=options)
    try:
        with RunFolder(outdir, enabled=is_main_process()):
            run_search(config)
    except (SearchError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error))


# Which methods read each method-specific option; any other method refuses it before any work, rather
# than ignoring it or failing deep inside a preset.
OPTION_METHODS = {
    "reward_num": ("autogan", "agan"), "ctrl_batch": ("autogan",), "baseline": ("autogan",),
    "child_steps": ("agan",), "is_range": ("agan",),
    "top_k": ("dggan",), "p": ("dggan",), "max_steps": ("dggan",), "final_iters": ("dggan",),
    "fid_num": ("dggan",), "max_grown": ("dggan",), "rank_by": ("dggan",), "base_net": ("dggan",),
    "n_critic": ("alphagan",), "betas": ("alphagan",), "batches": ("alphagan",),
    "lr": ("degas",), "arch_lr": ("degas",),
    "fid_stats": ("alphagan", "degas"), "metrics": ("alphagan", "degas"),
}


def _refuse_options_of_other_methods(method, given):
    for name, value in given.items():
        if value is not None and method not in OPTION_METHODS[name]:
            raise click.BadParameter(f"only for --method {' / '.join(OPTION_METHODS[name])}, not {method}",
                                     param_hint="--" + name.replace("_", "-"))


@click.command("bench-conventional")
@click.option("--device", default="auto", show_default=True)
@click.option("--config", "configs", default=None,
              help="tiny and/or paper, comma-separated [default: tiny on the CPU, tiny,paper on a GPU].")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Timed repeats (median).")
@click.option("--threads", type=click.IntRange(0), default=1, show_default=True,
              help="torch CPU threads (0: leave torch's default).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.option("--processes", default="1,8", show_default=True,
              help="Process counts N for the AutoGAN/AGAN candidates per hour (comma-separated).")
def bench_conventional_command(device, configs, repeats, threads, out, processes):
    """Seconds per alphaGAN search iteration, per DEGAS search step and per retraining step; on a
    GPU at the paper's configuration too, with the alphaGAN search cost projected against the
    paper's 3 GPU-hours (s) and 22 (l); AutoGAN's seconds per controller step and candidate reward,
    AGAN's per child model, and candidates per hour with N processes. Prints JSON."""
    from .bench import run

    try:
        counts = tuple(int(n) for n in processes.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers, got {processes!r}",
                                 param_hint="--processes")
    result = run(device=device, configs=configs, repeats=repeats, threads=threads,
                 log=lambda line: click.echo(line, err=True), processes=counts)
    click.echo(dump_json(result, out))


@click.command("degas-lr-readings")
@click.option("--steps", type=click.IntRange(1), default=40, show_default=True, help="Alternating search steps.")
@click.option("--size", type=click.IntRange(8), default=16, show_default=True, help="Image size (random images).")
@click.option("--images", type=click.IntRange(16), default=64, show_default=True, help="Number of images.")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--seed", default=0, show_default=True)
def degas_lr_readings_command(steps, size, images, batch, seed):
    """The alphas of a small DEGAS search under both readings of the paper's learning rate
    ("3e-1 / 3e-2"), as the markdown table of docs/conventional.md: per reading and step, the
    strongest softmax weight of an edge, averaged over the edges and the largest (1 / number of ops
    is uniform, 1 saturated). CPU, about a minute."""
    import torch

    from .searchers.degas import DEGAS_LR, LR_READINGS, alpha_trajectories

    gen = torch.Generator().manual_seed(seed)
    data = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen) for _ in range(images)]
    record_at = sorted({1, 5, 10, 20, steps} & set(range(1, steps + 1)))
    result = alpha_trajectories(data, steps, record_at, batch=batch, seed=seed)
    click.echo("| reading | weights lr | alphas lr | " + " | ".join(f"step {s}" for s in record_at) + " |")
    click.echo("|---|---|---|" + "---|" * len(record_at))
    for reading, rows in result.items():
        lr, arch_lr = LR_READINGS[reading](DEGAS_LR["cifar"])
        cells = " | ".join(f"{r['mean_max']:.3f} / {r['max_max']:.3f}" for r in rows)
        click.echo(f"| {reading} | {lr:g} | {arch_lr:g} | {cells} |")
