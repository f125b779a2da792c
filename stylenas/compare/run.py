"""The experiment behind ``stylenas compare``: the job list, one job = search -> shared retraining ->
shared evaluation, resumable, spread over torchrun processes, failures recorded.

Folder layout::

    DIR/compare.json                 the settings (a --resume must give the same ones, the feature
                                     network included: "features" is "inception" or "proxy")
    DIR/reference-features.pt        the reference's Inception features (evaluate.py)
    DIR/jobs/<name>/search/          the method's search folder (genotype.json, logs)
    DIR/jobs/<name>/search.json      the search's outcome, written when the search finished
    DIR/jobs/<name>/retrain/         the shared retraining (checkpoint.pt)
    DIR/jobs/<name>/retrain.json     written when the retraining finished
    DIR/jobs/<name>/result.json      the job's row, written atomically last: the job is done
                                     ({"status": "ok", ...} or {"status": "failed", "error": ...})
    DIR/leaderboard.{md,csv,json,png}, DIR/summary.json

Jobs: one per (method, seed) for every searcher and for ``random`` (random search in the space of
each searcher of the list: ``random-<searcher>``), and one per (published genotype, seed), whose seed
is the retraining's. Process r of W takes jobs r, r + W, ... in list order; a job's numbers depend on
its own seed only, so any process count gives the same leaderboard. Rank 0 writes the leaderboard
from the result files once every process has finished its share: the processes join a gloo process
group only then (its rendezvous is the barrier, with a 7-day timeout), so no job ever runs inside a
process group. Inner searches and trainings run as one process each (the torchrun variables are
hidden from them): the processes share the jobs, not a job.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from ..io import atomic_path
from ..runs import Interrupted, RunFolder, command_line, resuming
from .budgets import BUDGETS, Budget
from .families import FAMILIES, CompareError, fresh_folder
from . import evaluate as ev

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                      "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


@dataclass
class Job:
    name: str
    method: str  # a searcher, "random", or "published"
    seed: int
    space: str | None = None  # random: the searcher whose space it samples
    genotype: str | None = None  # published: the row's name

    @property
    def row(self):
        """The name of the row in the leaderboard (a method, random-<searcher> or a genotype)."""
        if self.method == "random":
            return f"random-{self.space}"
        return self.genotype if self.method == "published" else self.method


def job_list(family_cls, methods, seeds, published):
    """Searches first, then random searches, then published rows: a random search that waits for its
    searcher's measured budget (conventional family) only ever waits for a job earlier in the list,
    which never waits, so no process count can deadlock."""
    searchers = [m for m in methods if m != "random"]
    jobs = [Job(f"{method}-s{seed}", method, seed) for method in searchers for seed in seeds]
    if "random" in methods:
        jobs += [Job(f"random-{s}-s{seed}", "random", seed, space=s) for s in searchers or
                 [family_cls.DEFAULT_METHODS[0]] for seed in seeds]
    for name in published:
        jobs += [Job(f"published-{name}-s{seed}", "published", seed, genotype=name) for seed in seeds]
    return jobs


@contextlib.contextmanager
def single_process():
    """Hide torchrun's variables from the inner commands (each job runs in this process alone)."""
    saved = {k: os.environ.pop(k) for k in TORCHRUN_VARIABLES if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class Context:
    """What every job of a compare shares."""

    def __init__(self, data, resolution, device, budget, inception, outdir, log):
        self.data, self.resolution, self.device, self.budget = data, resolution, device, budget
        self.inception, self.outdir, self.log = inception, Path(outdir), log
        self._reference = None
        self._dataset = None
        self.inception_name = "default"
        self.inception_path = None  # the --inception file, handed to searchers that score with it
        self.features = "inception"  # or "proxy" (--proxy): what scores every row (evaluate.FEATURES)
        self.searchers = []  # the searchers of this compare's --methods
        self._net = None

    @property
    def torch_device(self):
        from ..devices import resolve_device

        return resolve_device(self.device)

    @property
    def reference(self):
        if self._reference is None:
            self._reference = ev.reference_features(
                self.outdir, self.dataset, {"data": str(Path(self.data).resolve()), "resolution": self.resolution,
                                            "inception": self.inception_name},
                self.budget.eval_num_ref, self.net, self.log)
        return self._reference

    @property
    def net(self):
        if self._net is None:
            self._net = (ev.proxy_network(self.torch_device) if self.features == "proxy"
                         else ev.inception_network(self.inception, self.torch_device))
        return self._net

    @property
    def dataset(self):
        if self._dataset is None:
            from ..datasets import LMDBImages

            self._dataset = LMDBImages(str(self.data), resolution=self.resolution)
        return self._dataset

    def searcher_kimg(self, method, seed, poll_seconds=2.0):
        """The measured search cost of job ``<method>-s<seed>`` of this compare, once it has finished its
        search (waiting for it when another process runs it); None when that job failed before."""
        if method not in self.searchers:  # random search alone: no run of the searcher to measure
            return None
        folder = self.outdir / "jobs" / f"{method}-s{seed}"
        said = False
        while True:
            if (folder / "search.json").is_file():
                return float(_read_json(folder / "search.json")["kimg"])
            if (folder / "result.json").is_file() and _read_json(folder / "result.json")["status"] != "ok":
                return None
            if not said:
                self.log(f"random search in {method}'s space: waiting for {folder.name}'s search (its budget)")
                said = True
            time.sleep(poll_seconds)

    def candidate_is(self, checkpoint):
        """The Inception Score of a candidate (AutoGAN's and AGAN's reward), 10 splits."""
        _, logits = ev.generated_features(checkpoint, self.budget.candidate_fid_num, self.net)
        from ..metrics import inception_score

        return inception_score(logits, splits=min(ev.IS_SPLITS, len(logits)))[0]

    def candidate_fid(self, checkpoint):
        return ev.checkpoint_fid(checkpoint, self.reference, self.budget.candidate_fid_num, self.net)


def process_device(device):
    """The device of this process's jobs: under torchrun, ``auto`` and ``cuda`` mean the local rank's GPU
    (each process runs its jobs on its own GPU)."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(local_rank) % torch.cuda.device_count()}"
    return device


def _write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def _read_json(path):
    return json.loads(Path(path).read_text())


def run_job(job, family, ctx, folder):
    """search -> retrain -> evaluate, each stage skipped when its record says it finished."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    search_record = folder / "search.json"
    if search_record.is_file():
        search = _read_json(search_record)
    else:
        tic = time.perf_counter()
        search_dir = fresh_folder(folder / "search")
        if job.method == "published":
            genotype = search_dir / "genotype.json"
            dict(family.published())[job.genotype](genotype)
            outcome = {"genotype": str(genotype), "kimg": 0.0, "score": None, "score_name": None, "candidates": 0}
        else:
            with single_process():
                result = (family.random(job.space, job.seed, search_dir) if job.method == "random"
                          else family.search(job.method, job.seed, search_dir))
            outcome = dict(result.__dict__)
        seconds = time.perf_counter() - tic
        search = {**outcome, "seconds": seconds, "device": str(ctx.torch_device),
                  "gpu_hours": seconds / 3600 if ctx.torch_device.type == "cuda" else None}
        _write_json(search_record, search)
    retrain_record = folder / "retrain.json"
    if retrain_record.is_file():
        retrain = _read_json(retrain_record)
    else:
        tic = time.perf_counter()
        with single_process():
            checkpoint = family.retrain(search["genotype"], job.seed, folder / "retrain")
        retrain = {"checkpoint": checkpoint, "seconds": time.perf_counter() - tic}
        _write_json(retrain_record, retrain)
    scores = ev.score_checkpoint(retrain["checkpoint"], ctx.reference, ctx.budget.eval_num, ctx.net)
    return {"status": "ok", "job": job.name, "method": job.row, "kind": job.method, "seed": job.seed, **scores,
            "features": ctx.features, "params": ev.parameter_count(retrain["checkpoint"]),
            "search_kimg": search["kimg"], "search_seconds": search["seconds"], "search_gpu_hours": search["gpu_hours"],
            "search_score": search["score"], "search_score_name": search["score_name"],
            "candidates": search["candidates"], "retrain_seconds": retrain["seconds"],
            "genotype": search["genotype"], "checkpoint": retrain["checkpoint"]}


def _wait_for_every_process():
    """The barrier after the jobs: joining the process group waits for every process."""
    import datetime

    import torch.distributed as dist

    from ..train.distributed import join_process_group

    join_process_group("gloo", datetime.timedelta(days=7))
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def settings_of(data, resolution, family, methods, seeds, budget, eval_counts, features="inception"):
    return {"data": str(Path(data).resolve()), "resolution": resolution, "family": family, "methods": list(methods),
            "seeds": list(seeds), "budget": budget.to_dict(), "eval": eval_counts, "features": features}


def compare(data, outdir, methods=None, seeds=(0, 1, 2), budget="tiny", family="conventional", resume=False,
            device="auto", inception=None, resolution=None, log=None, published=None, proxy=False):
    """Run (or resume) a compare; returns the leaderboard rows on rank 0 (None on the others).

    `published`: the names of the published genotypes that are rows (default: every one the family
    has at this resolution; [] for none). `proxy`: score every row with the labelled proxy network
    (``evaluate.proxy_network``) instead of pytorch-fid's weights, which it then does not need."""
    log = log or (lambda line: click.echo(line, err=True))
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = process_device(device)
    if isinstance(budget, Budget):  # a custom one (tests: smaller sample counts)
        budget_obj = budget
    elif budget in BUDGETS:
        budget_obj = BUDGETS[budget]
    else:
        raise CompareError(f"--budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if family not in FAMILIES:
        raise CompareError(f"--family must be one of {', '.join(FAMILIES)}, got {family!r}")
    family_cls = FAMILIES[family]
    methods = list(methods or family_cls.DEFAULT_METHODS)
    unknown = [m for m in methods if m != "random" and m not in family_cls.SPACES]
    if unknown:
        raise CompareError(f"--methods: {', '.join(unknown)} not searchers of the {family} family (choose from "
                           f"{', '.join([*family_cls.SPACES, 'random'])})")
    if not seeds:
        raise CompareError("--seeds: give at least one seed")
    from ..datasets import DatasetError, LMDBImages
    from ..metrics import InceptionWeightsError, find_weights

    try:
        dataset = LMDBImages(str(data), resolution=resolution)
    except DatasetError as error:
        raise CompareError(f"--data: {error}") from None
    if proxy and inception:
        raise CompareError("--proxy scores with a random-weight network: give it or --inception PATH, not both")
    try:  # loaded once, shared by every evaluation
        weights = None if proxy else find_weights(inception, download=False)
    except InceptionWeightsError as error:
        raise CompareError(f"--inception: {error} (or compare with --proxy: labelled proxy features, no FID)") \
            from None
    outdir = Path(outdir)
    ctx = Context(data, dataset.resolution, device, budget_obj, weights, outdir, log)
    ctx.features = "proxy" if proxy else "inception"
    ctx.inception_name = "proxy" if proxy else str(inception or "default")
    ctx.inception_path = str(inception) if inception else None
    ctx.searchers = [m for m in methods if m != "random"]
    ctx._dataset = dataset
    fam = family_cls(ctx)
    available = [name for name, _ in fam.published()]
    if published is None:
        published = available
    unknown = [name for name in published if name not in available]
    if unknown:
        raise CompareError(f"--published: {', '.join(unknown)} not published genotypes of the {family} family at "
                           f"{dataset.resolution} px (choose from {', '.join(available) or 'none'})")
    jobs = job_list(family_cls, methods, seeds, published)
    settings = settings_of(data, dataset.resolution, family, methods, seeds, budget_obj,
                           {"num": budget_obj.eval_num, "num_ref": budget_obj.eval_num_ref or len(dataset)},
                           ctx.features)
    settings_path = outdir / "compare.json"
    resume = resuming(resume, settings_path)  # a torchrun restart keeps the finished jobs
    if rank > 0 and not resume:
        pass  # rank 0 checks a fresh folder and writes compare.json (maybe already, before this process looks)
    elif settings_path.is_file():
        if not resume:
            raise CompareError(f"{outdir} already holds a compare ({settings_path.name}); use --resume or another "
                               f"--outdir")
        saved = _read_json(settings_path)
        saved.setdefault("features", "inception")  # folders from before --proxy existed
        changed = [k for k in ("data", "resolution", "family", "budget", "eval", "features")
                   if saved.get(k) != settings.get(k)]
        if changed:
            raise CompareError(f"--resume: {settings_path} was started with other settings: " + ", ".join(
                f"{k}={saved.get(k)!r} (now {settings.get(k)!r})" for k in changed))
    elif resume:
        raise CompareError(f"--resume: no compare in {outdir} ({settings_path.name} is missing)")
    lock = RunFolder(outdir, enabled=rank == 0, log=log).acquire()  # one compare per folder
    try:
        if rank == 0:
            _write_json(settings_path, settings)

        mine = jobs[rank::world]
        log(f"compare ({family}, budget {budget_obj.name}): {len(jobs)} jobs, {len(mine)} on process {rank} of "
            f"{world}; {fam.budget_text()}" + (f"; every score on {ev.FEATURES['proxy']}" if proxy else ""))
        counts = {"done before": 0, "ok": 0, "failed": 0}
        for k, job in enumerate(mine):
            folder = outdir / "jobs" / job.name
            result_path = folder / "result.json"
            if result_path.is_file() and _read_json(result_path).get("status") == "ok":
                counts["done before"] += 1
                log(f"[{k + 1}/{len(mine)}] {job.name}: finished in an earlier run, kept")
                continue
            log(f"[{k + 1}/{len(mine)}] {job.name}: search -> retrain -> evaluate")
            tic = time.perf_counter()
            try:
                result = run_job(job, fam, ctx, folder)
            except Interrupted as stop:  # SIGINT / SIGTERM: the whole compare stops, resumable
                raise Interrupted(stop.signum, f"{job.name}: {stop}; continue the compare with: "
                                               f"{command_line(resume=True)}") from None
            except (Exception, SystemExit) as error:  # noqa: BLE001 - recorded; the other jobs go on
                message = str(error) if isinstance(error, CompareError) else f"{type(error).__name__}: {error}"
                first = message.splitlines()[0] if message.strip() else type(error).__name__
                result = {"status": "failed", "job": job.name, "method": job.row, "kind": job.method, "seed": job.seed,
                          "error": first[:500]}
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "error.txt").write_text(traceback.format_exc())
            result["seconds"] = time.perf_counter() - tic
            result["finished_at"] = time.time()
            _write_json(result_path, result)
            counts[result["status"]] += 1
            with open(outdir / "log.jsonl", "a") as log_file:  # one short append per job: whole lines
                log_file.write(json.dumps({"rank": rank, **{k: result.get(k) for k in (
                    "job", "status", "fid", "search_kimg", "seconds", "finished_at", "error")}}) + "\n")
            fid_name = "proxy FID" if ctx.features == "proxy" else "FID"
            line = (f"{fid_name} {result['fid']:.4g}, {result['search_kimg']:.3g} kimg" if result["status"] == "ok"
                    else f"FAILED: {result['error']}")
            log(f"[{k + 1}/{len(mine)}] {job.name}: {line} ({result['seconds']:.1f} s)")
        log(f"process {rank}: {counts['ok']} jobs finished, {counts['failed']} failed, {counts['done before']} kept")
        if world > 1:
            _wait_for_every_process()
        if rank != 0:
            return None
        from .report import write_leaderboard

        results = [_read_json(outdir / "jobs" / job.name / "result.json") for job in jobs
                   if (outdir / "jobs" / job.name / "result.json").is_file()]
        rows = write_leaderboard(outdir, results, settings, fam)
        failed = [r for r in results if r["status"] != "ok"]
        log(f"compare: {len(results) - len(failed)} of {len(jobs)} jobs finished, {len(failed)} failed"
            + "".join(f"\n  {r['job']}: {r['error']}" for r in failed) + f"\nleaderboard: {outdir / 'leaderboard.md'}")
        return rows
    finally:
        lock.release()
