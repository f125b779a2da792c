"""A DGGAN search on disk, under Algorithm 1 (``searchers.dggan``): its state (``dggan-state.json``:
settings, step, every candidate's record, parents, ProgGAN baselines, best, final), the weights of
the live candidates (``candidates/c<id>.pt``; a resumed step loads the finished ones instead of
training them again), the training statistics per resolution (``fid-ref-<R>.npz``), the
candidates trained and scored on all processes, and the outputs written after every step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ...io import atomic_path
from ...train.runlog import save_image_grid
from ..genotypes import ConventionalGenotype
from ..spaces.dggan_grown import LEGACY_BASE_NET, Action, apply_action, base_body, build_grown, count_parameters, \
    grow, stage_resolutions
from ..spread import job_seed, spread_jobs
from .dggan_candidates import final_state, train_candidate
from .dggan_reports import budget_simulations, log_record, plot_fig3, write_csv

STATE_FILE = "dggan-state.json"
FID_BATCH = 16  # candidates per frechet_distance_batched call
# settings of the scorer a --resume must agree with beside the search's own: scores measured with
# other sample counts or other Inception weights are not comparable
SCORER_SETTINGS = ("scorer", "scorer_samples", "scorer_reference_images", "inception_sha256")


def relabel(state, old, new):
    """``state`` with its score keys renamed ``old`` -> ``new`` (``fid``, ``fid_norm`` <->
    ``proxy_fid``, ``proxy_fid_norm``) in the candidates and the final record: in memory a score is
    "fid", on disk it carries the scorer's name, so a proxy score is never stored as an FID."""
    if old == new:
        return state

    def rename(record):
        return {(new + k[len(old):] if k in (old, old + "_norm") else k): v for k, v in record.items()}

    return {**state, "candidates": [rename(r) for r in state["candidates"]],
            "final": rename(state["final"]) if state.get("final") else state.get("final")}


class SearchInterrupted(RuntimeError):
    """Raised by ``stop_after`` (tests): the search stops as if killed after a candidate's weights."""


class DGGANRun:
    """The candidates of a search and their files. ``dataset``: items uint8 [3, R, R] at (at least)
    the final resolution; ``scorer``: a FIDScorer; ``dist``: a ``stylenas.train.distributed.Dist``
    or None."""

    def __init__(self, config, outdir, dataset, scorer, device="cpu", dist=None,
                 log=print, resume=False, source=None):
        self.config, self.outdir = config.resolved(), Path(outdir)
        self.dataset, self.scorer, self.device, self.dist, self.log = dataset, scorer, torch.device(device), dist, log
        self.source = source or {}
        self.is_main = dist is None or dist.is_main
        self.state_path, self.weights = self.outdir / STATE_FILE, self.outdir / "candidates"
        self.trained = 0  # candidates trained by this process in this call (resume tests count them)
        self._stop_after = None
        self.stop = None  # a stylenas.runs.StopSignals: after SIGINT/SIGTERM stop after the current child
        settings = self.settings()
        if resume:
            if not self.state_path.is_file():
                raise ValueError(f"--resume: no {STATE_FILE} in {self.outdir} to resume from")
            try:
                stored = json.loads(self.state_path.read_text())
                self.state = relabel(stored, stored["settings"].get("scorer", "fid"), "fid")
            except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                raise ValueError(f"{self.state_path}: not a readable DGGAN state ({error})") from None
            old = self.state.get("settings", {})
            old.setdefault("base_net", LEGACY_BASE_NET)  # a state from before the switch built these
            mismatched = [k for k in self.config.STRUCTURAL + ("images",) + SCORER_SETTINGS
                          if old.get(k) != settings.get(k)]
            if mismatched:
                raise ValueError(f"--resume: {self.state_path} was written with other settings: " + ", ".join(
                    f"{k}={old.get(k)!r} (now {settings.get(k)!r})" for k in mismatched))
            self.state["settings"] = settings  # budget settings (max_steps, final_iters) may change
        else:
            if self.state_path.exists():
                raise ValueError(f"{self.outdir} already holds a DGGAN search ({STATE_FILE}); use --resume or "
                                 f"another --outdir")
            if any(self.weights.glob("c*.pt")):
                raise ValueError(f"{self.weights} holds candidate weights of another search; use another --outdir")
            self.state = {"settings": settings, "step": -1, "candidates": [], "parents": [], "baselines": {},
                          "best": None, "final": None}
        self._barrier()  # every process has checked the folder before rank 0 writes into it
        if self.is_main:
            self.weights.mkdir(parents=True, exist_ok=True)
            (self.outdir / "samples").mkdir(exist_ok=True)
            if not resume:  # from now on a kill leaves a state to --resume from, even inside step 0
                self.write_state()
        self._barrier()
        self.references = {}

    def settings(self):
        out = asdict(self.config)
        scorer = {"scorer": self.scorer.label, "scorer_samples": getattr(self.scorer, "num", None),
                  "scorer_reference_images": getattr(self.scorer, "ref_num", None),
                  "inception_sha256": getattr(self.scorer, "weights_sha256", None)}
        return json.loads(json.dumps({**out, "images": len(self.dataset), **scorer}))

    def write_state(self):
        """dggan-state.json (atomically), scores under the scorer's name."""
        with atomic_path(self.state_path) as tmp:
            tmp.write_text(json.dumps(relabel(self.state, "fid", self.scorer.label)))

    def check_stop(self):
        """After SIGINT/SIGTERM: raise ``Interrupted`` with the resume command. The state holds whole
        steps and every finished child's weights are on disk, so a resume draws the cut step again
        and retrains only the children not finished. Each process reads its own flag (no collective:
        the processes' children differ); torchrun passes the signal to all of them."""
        if self.stop is not None and self.stop.requested():
            self.stop.interrupt(self.state_path)

    def _barrier(self):
        if self.dist is not None:
            self.dist.barrier()

    # -- candidates ------------------------------------------------------------------------
    def candidate(self, cid):
        return self.state["candidates"][cid]

    def weights_path(self, cid):
        return self.weights / f"c{cid:05d}.pt"

    def load_weights(self, cid):
        path = self.weights_path(cid)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as error:
            raise ValueError(f"{path}: weights of candidate {cid} unreadable ({error})") from None

    def reference(self, resolution):
        """Training statistics at ``resolution``: computed once by rank 0 into fid-ref-<R>.npz."""
        if resolution not in self.references:
            path = self.outdir / f"fid-ref-{resolution}.npz"
            if self.is_main and not path.is_file():
                mu, sigma = self.scorer.reference_stats(self.dataset, resolution, self.device)
                with atomic_path(path, suffix=".npz") as tmp:
                    with open(tmp, "wb") as handle:
                        np.savez(handle, mu=mu.numpy(), sigma=sigma.numpy())
            self._barrier()
            with np.load(path) as data:
                self.references[resolution] = (torch.from_numpy(data["mu"]), torch.from_numpy(data["sigma"]))
        return self.references[resolution]

    def evaluate_jobs(self, jobs, step):
        """Train (or, when its weights exist, load) every job's child on all processes; FID in
        batches of up to FID_BATCH candidates of one resolution on each process (a 2048-d
        covariance is 32 MB: they are not all kept); results (in job order) on every rank."""
        c = self.config
        pending, fids = {}, {}  # resolution -> [(index, (mu, sigma))]; index -> FID

        def flush(resolution):
            batch = pending.pop(resolution, [])
            distances = self.scorer.distances([stats for _, stats in batch], self.reference(resolution))
            fids.update(zip([index for index, _ in batch], distances))

        def evaluate(job, index):
            cid = job["id"]
            path = self.weights_path(cid)
            body = job["genotype"]
            tic = time.perf_counter()
            if path.is_file():  # finished before a kill: not retrained
                G, D = build_grown(body)
                state = self.load_weights(cid)
                G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
                losses = state.get("losses", {})
            else:
                parent = self.load_weights(job["parent"]) if job["parent"] is not None else None
                if job["action"] is None:
                    G, D = build_grown(body)
                else:
                    _, G, D = grow(self.candidate(job["parent"])["genotype"], parent, Action.parse(job["action"]))
                losses = train_candidate(G, D, self.dataset, c.child_iters, c.batch, c.lr, c.betas, c.fade_iters,
                                         self.device)
                state = {**final_state(G, D), "losses": losses}
                with atomic_path(path) as tmp:
                    torch.save(state, tmp)
                self.trained += 1
                if self._stop_after is not None and self.trained >= self._stop_after:
                    raise SearchInterrupted(f"stopped after {self.trained} trained candidates")
                self.check_stop()
                G, D = build_grown(body)
                G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
            G, D = G.to(self.device), D.to(self.device)
            resolution = stage_resolutions(body)[-1]
            pending.setdefault(resolution, []).append(
                (index, self.scorer.candidate_stats(G, job_seed(c.seed, 1_000_000 + cid), self.device)))
            if len(pending[resolution]) >= FID_BATCH:
                flush(resolution)
            return {"g_params": count_parameters(G), "d_params": count_parameters(D), "losses": losses,
                    "seconds": time.perf_counter() - tic}

        for resolution in sorted({stage_resolutions(j["genotype"])[-1] for j in jobs}):
            self.reference(resolution)  # on every rank, before the jobs: its barrier must not depend on them
        results = spread_jobs(jobs, evaluate, seed=job_seed(c.seed, step), dist=self.dist,
                              log=lambda line: self.log(f"step {step}: {line}"))
        for resolution in sorted(pending):
            flush(resolution)
        if self.dist is not None and self.dist.active:
            merged = {}
            for part in self.dist.gather_objects(fids):
                merged.update(part)
            fids = merged
        return [{**r, "fid": fids[i]} for i, r in enumerate(results)]

    def new_candidate(self, step, parent, action, baseline=False, sampled=True):
        c = self.config
        body = base_body(c.latent_dim, c.channels, c.base_net) if parent is None else apply_action(
            self.candidate(parent)["genotype"], action)
        record = {"id": len(self.state["candidates"]), "step": step, "parent": parent,
                  "action": None if action is None else action.name, "resolution": stage_resolutions(body)[-1],
                  "genotype": body, "baseline": baseline, "sampled": sampled}
        self.state["candidates"].append(record)
        return record

    def add_baselines(self, step, jobs):
        """Fig. 3's ProgGAN baseline of every resolution ``jobs`` reach for the first time: the
        child that doubled the previous baseline when one was drawn, else an extra candidate
        (appended to ``jobs``, trained but never a parent)."""
        for resolution in sorted({j["resolution"] for j in jobs}):
            if str(resolution) in self.state["baselines"]:
                continue
            low = self.state["baselines"][str(resolution // 2)]
            same = [j for j in jobs if j["parent"] == low and j["action"] == "double"]
            if same:
                same[0]["baseline"] = True
                self.state["baselines"][str(resolution)] = same[0]["id"]
            else:
                extra = self.new_candidate(step, low, Action("double"), baseline=True, sampled=False)
                jobs.append(extra)
                self.state["baselines"][str(resolution)] = extra["id"]

    def record_scores(self, jobs, results):
        """Results of ``evaluate_jobs`` into the candidates' records, FID normalised by the baseline."""
        for job, result in zip(jobs, results):
            job.update(fid=result["fid"], g_params=result["g_params"], d_params=result["d_params"],
                       g_d_ratio=result["g_params"] / result["d_params"], seconds=result["seconds"],
                       **{k: v for k, v in result["losses"].items()})
        for job in jobs:
            base = self.candidate(self.state["baselines"][str(job["resolution"])])
            job["fid_norm"] = job["fid"] / base["fid"] if base.get("fid") else None

    def close_step(self, step, jobs):
        """After the new parents are chosen: mark them, track the best candidate at the final
        resolution, and save the step (rank 0) before every process goes on."""
        for job in jobs:
            job["kept"] = job["id"] in self.state["parents"]
            if job["resolution"] == self.config.final_resolution and (
                    self.state["best"] is None or job["fid"] < self.candidate(self.state["best"])["fid"]):
                self.state["best"] = job["id"]
        self.state["step"] = step
        if self.is_main:
            self.save(step_jobs=jobs)
        self._barrier()

    # -- outputs ---------------------------------------------------------------------------------
    def genotype(self, record):
        route, cid = [], record["id"]
        while cid is not None:
            r = self.candidate(cid)
            route.append({"id": cid, "action": r["action"], self.scorer.label: r.get("fid")})
            cid = r["parent"]
        return ConventionalGenotype("dggan", record["resolution"], record["genotype"],
                                    arch_parameters={"route": route[::-1], self.scorer.label: record.get("fid")},
                                    source={"method": "dggan", **self.source, "settings": self.state["settings"]})

    def save(self, step_jobs=()):
        """State, log lines of ``step_jobs``, CSV, figure and the best genotype so far; weights of
        candidates that are neither parents, baselines nor the best are deleted."""
        self.write_state()
        with open(self.outdir / "log.jsonl", "a") as handle:
            for job in step_jobs:
                handle.write(json.dumps(log_record(job, self.scorer.label)) + "\n")
        write_csv(self.state["candidates"], self.outdir / "candidates.csv", self.scorer.label)
        scored = [r for r in self.state["candidates"] if "fid" in r]
        best = self.candidate(self.state["best"]) if self.state["best"] is not None else min(
            scored, key=lambda r: (-r["resolution"], r["fid"]))
        self.genotype(best).save(self.outdir / "genotype.json")
        c = self.config
        simulation = budget_simulations(scored, c.top_k, c.p, c.final_resolution, rank_by=c.rank_by)
        with atomic_path(self.outdir / "simulation.json") as tmp:
            tmp.write_text(json.dumps(simulation, indent=1) + "\n")
        plot_fig3(scored, best["id"], self.outdir / "fig3.png", simulation, label=self.scorer.label)
        if step_jobs:
            self.save_samples(self.candidate(self.state["parents"][0]))
        live = set(self.state["parents"]) | set(self.state["baselines"].values()) | {best["id"]}
        for path in self.weights.glob("c*.pt"):
            if int(path.stem[1:]) not in live and int(path.stem[1:]) < len(self.state["candidates"]):
                path.unlink()

    def save_samples(self, record):
        """samples/step<k>.png: 16 images of a step's best child (the same latents every step)."""
        G, _ = build_grown(record["genotype"])
        G.load_state_dict(self.load_weights(record["id"])["G"])
        z = torch.randn(16, G.latent_dim, generator=torch.Generator().manual_seed(self.config.seed))
        with torch.no_grad():
            save_image_grid(G.eval()(z), self.outdir / "samples" / f"step{record['step']:03d}.png", nrow=4)

    def rewrite_log(self):
        """log.jsonl from the state (a resumed search drops the lines of its unfinished step)."""
        with atomic_path(self.outdir / "log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(log_record(r, self.scorer.label)) + "\n" for r in self.state["candidates"]
                                   if "fid" in r and r["step"] <= self.state["step"]))
