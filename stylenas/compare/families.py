"""The per-family adapters of ``stylenas compare``: which searchers a family has, what each one's
search, random sampler and score are, which published genotypes are rows, and the shared
retraining. Everything here calls the searchers' and trainers' public commands and functions.

A method's search returns a ``SearchOutcome``: the genotype file, the budget units it spent (kimg of
images through G or D, ``budgets``), and its search-time score of the architecture it returned (lower
is better; None when the searcher has none), which the statistics correlate with the retrained FID.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import click

from .budgets import TRAIN_IMAGES_PER_REAL, alphagan_iteration_images
from .random_search import random_search, sample_stylegan2


class CompareError(RuntimeError):
    """A compare that cannot start or a job that cannot run; one line for the user."""


@dataclass
class SearchOutcome:
    genotype: str  # path of the genotype file to retrain
    kimg: float  # images through G or D during the search, thousands
    score: float | None = None  # the search-time score of that architecture (lower is better)
    score_name: str | None = None
    candidates: int = 1  # architectures the search evaluated


def run_command(command, args, what):
    """A stylenas click command run in this process; its error becomes a CompareError, its stop by
    SIGINT / SIGTERM (it checkpointed; exit status 130 / 143) a ``stylenas.runs.Interrupted``."""
    from ..runs import Interrupted

    try:
        status = command.main([str(a) for a in args], standalone_mode=False)
    except click.ClickException as error:
        raise CompareError(f"{what}: {error.format_message()}") from None
    except SystemExit as error:
        status = error.code
    if status in (130, 143):
        raise Interrupted(status - 128, f"{what} stopped by a signal (its folder keeps a checkpoint)")
    if status not in (0, None):
        raise CompareError(f"{what}: exited with status {status}")


def fresh_folder(folder):
    """An empty folder for a stage that did not finish (its half-written run is discarded)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


class StyleGAN2Family:
    """alphaGAN on StyleGAN2 (micro or macro operations, dynamic W), random search in each space, the
    original StyleGAN2 and the alphaGAN paper's Table 9 genotypes where their resolution fits; the
    retraining is ``stylenas train`` at the budget's cfg and kimg."""

    name = "stylegan2"
    # method -> the space it searches (the alphaGAN paper's Table 9 searched micro + dynamic W)
    SPACES = {"alphagan": "micro+dynamic_w", "alphagan-macro": "macro+dynamic_w"}
    DEFAULT_METHODS = ("alphagan", "alphagan-macro", "random")
    TABLE9 = ("alphagan_celeba128", "alphagan_church256", "alphagan_ffhq1024")

    def __init__(self, ctx):
        self.ctx = ctx  # data, resolution, device, budget, inception, reference, log

    # ------------------------------------------------------------------ rows
    def published(self):
        """[(row name, genotype file writer)] of the published architectures at the data's resolution."""
        from ..search.genotype import Genotype

        rows = [("stylegan2", lambda path: Genotype.original(self.ctx.resolution).save(path))]
        try:
            from ..search import load_genotype  # the Table 9 genotypes, where this StyleNAS has them
        except ImportError:
            return rows
        for name in self.TABLE9:
            try:
                genotype = load_genotype(name)
            except Exception:  # noqa: BLE001 - a name this version does not know is simply not a row
                continue
            if genotype.resolution == self.ctx.resolution:
                rows.append((name, lambda path, g=genotype: g.save(path)))
        return rows

    def budget_text(self):
        return f"{self.budget_kimg():.4g} kimg for every search, random search included"

    def recipe_text(self):
        """The random-search candidates' and every row's retraining recipe, for the protocol."""
        b = self.ctx.budget
        return (f"Random search: architectures drawn uniformly (seeded) from the searcher's own space, each "
                f"trained {b.candidate_kimg:g} kimg with the shared recipe and scored by the FID of "
                f"{b.candidate_fid_num} images; the best is kept; the search stops at the same budget.\n"
                f"Retraining (every row): `stylenas train --cfg {b.retrain_cfg} --kimg {b.retrain_kimg:g}` with "
                f"the row's seed.")

    def budget_kimg(self):
        from ..search import PRESETS

        b = self.ctx.budget
        return b.search_iters * alphagan_iteration_images(PRESETS[b.search_preset]) / 1000

    # ------------------------------------------------------------------ searches
    def search(self, method, seed, folder):
        from ..search.commands import search_command

        space, _, dynamic = self.SPACES[method].partition("+")
        b = self.ctx.budget
        run_command(search_command, ["--data", self.ctx.data, "--outdir", folder, "--space", space,
                                     "--dynamic-w" if dynamic else "--no-dynamic-w",
                                     "--resolution", self.ctx.resolution, "--preset", b.search_preset,
                                     "--iters", b.search_iters, "--seed", seed, "--device", self.ctx.device,
                                     "--sample-every", 0, "--checkpoint-every", 0, "--workers", b.search_workers],
                    f"{method} search")
        gaps = [json.loads(line).get("duality_gap") for line in (Path(folder) / "log.jsonl").read_text().splitlines()
                if line.strip()]
        gaps = [g for g in gaps if g is not None]
        return SearchOutcome(str(Path(folder) / "genotype.json"), self.budget_kimg(),
                             score=gaps[-1] if gaps else None, score_name="duality gap (last iteration)")

    def random(self, method, seed, folder):
        """Random search in `method`'s space: candidates trained with the shared recipe for the budget's
        candidate_kimg and scored by FID (see docs/compare.md: a trained single architecture has no
        supernet, so alphaGAN's duality gap cannot be measured on it)."""
        from ..search.run import network_settings
        from ..search import PRESETS

        b = self.ctx.budget
        paradigm = self.SPACES[method]
        _, channels = network_settings(b.search_preset, PRESETS[b.search_preset].channel_mult)

        def evaluate(genotype, cand_dir):
            checkpoint = self.retrain(str(Path(cand_dir) / "genotype.json"), seed, Path(cand_dir) / "train",
                                      kimg=b.candidate_kimg)
            score = self.ctx.candidate_fid(checkpoint)
            return score, b.candidate_kimg * TRAIN_IMAGES_PER_REAL

        result = random_search(lambda rng: sample_stylegan2(rng, self.ctx.resolution, paradigm, channels), evaluate,
                               self.budget_kimg(), seed, folder, log=self.ctx.log)
        return SearchOutcome(result["best"]["genotype"], result["kimg"], score=result["best"]["score"],
                             score_name=f"FID of {b.candidate_fid_num} images after {b.candidate_kimg:g} kimg",
                             candidates=len(result["candidates"]))

    # ------------------------------------------------------------------ the shared retraining
    def retrain(self, genotype, seed, folder, kimg=None):
        from ..train.commands import train_command

        b = self.ctx.budget
        kimg = b.retrain_kimg if kimg is None else kimg
        folder = fresh_folder(folder)
        run_command(train_command, ["--data", self.ctx.data, "--genotype", genotype, "--outdir", folder,
                                    "--cfg", b.retrain_cfg, "--kimg", kimg, "--snap", kimg, "--seed", seed,
                                    "--device", self.ctx.device, "--workers", b.search_workers, "--metrics", "none"],
                    "retraining")
        return str(folder / "checkpoint.pt")


FAMILIES = {"stylegan2": StyleGAN2Family}


class ConventionalFamily:
    """The conventional GAN searchers (``stylenas search-conventional``), each with its own budget
    preset's options; random search in a searcher's own space; the published AutoGAN-A/B/C and
    alphaGAN (l)/(s); the retraining is ``stylenas train-conventional`` with one loss (hinge), the same
    steps and batch for every row. The search cost is measured (``counting.count_images``)."""

    name = "conventional"
    # method -> the space its random search samples
    SPACES = {"alphagan": "alphagan_conv", "degas": "degas", "autogan": "autogan", "agan": "agan", "dggan": "dggan"}
    DEFAULT_METHODS = ("alphagan", "degas", "autogan", "agan", "dggan", "random")
    # the score each searcher ranks architectures by: AutoGAN's and AGAN's reward is the Inception
    # Score (higher is better: the random search minimises -IS); the others get FID (DGGAN's own; the
    # duality gap of alphaGAN and DEGAS's objective need a supernet, which a candidate is not)
    SCORES = {"autogan": "is", "agan": "is"}
    # the searchers that score candidates with the FID Inception; `stylenas compare --proxy` hands them
    # `--proxy` (the `tiny` preset always does); alphaGAN and DEGAS search without it
    PROXY_REWARD = ("autogan", "agan", "dggan")

    def __init__(self, ctx):
        self.ctx = ctx

    def published(self):
        from dataclasses import replace

        from ..conventional import PUBLISHED, load_genotype

        return [(name, lambda path, n=name: replace(load_genotype(n), resolution=self.ctx.resolution).save(path))
                for name in PUBLISHED]

    def budget_text(self):
        return ("each searcher runs its preset's schedule and its cost is measured; random search in a "
                "searcher's space gets that searcher's measured cost with the same seed (else "
                f"{self.budget_kimg():.4g} kimg)")

    def recipe_text(self):
        """The random-search candidates' and every row's retraining recipe, for the protocol."""
        b = self.ctx.budget
        retrain = " ".join(map(str, b.conventional["retrain"]))
        return (f"Random search: architectures drawn uniformly (seeded) from each searcher's own space, each "
                f"trained {b.conventional['candidate_steps']} G steps with the shared recipe and scored by the "
                f"searcher's own reward where a single network has one (AutoGAN, AGAN: the Inception Score), else "
                f"by the FID, of {b.candidate_fid_num} images; the best is kept; the search stops at its "
                f"searcher's measured cost.\n"
                f"Retraining (every row): `stylenas train-conventional --loss hinge {retrain}` with the row's seed.")

    def budget_kimg(self, method=None, seed=None):
        """A random search's budget: the measured cost of its searcher's run with the same seed (the
        searchers run their own schedules), else (that search failed) the preset's random_kimg."""
        measured = None if method is None else self.ctx.searcher_kimg(method, seed)
        return measured if measured is not None else float(self.ctx.budget.conventional["random_kimg"])

    def _options(self):
        inception = ["--inception", self.ctx.inception_path] if self.ctx.inception_path else []
        return ["--data", self.ctx.data, "--resolution", self.ctx.resolution, "--device", self.ctx.device, *inception]

    def search(self, method, seed, folder):
        from ..conventional.commands import search_conventional_command
        from .counting import count_images

        args = ["--method", method, "--outdir", folder, "--seed", seed, *self._options(),
                *self.ctx.budget.conventional["search"][method]]
        # without a weights file (--proxy) their rewards are proxies too, labelled so in their logs
        if method in self.PROXY_REWARD and self.ctx.features == "proxy" and "--proxy" not in args:
            args.append("--proxy")
        with count_images() as counter:
            run_command(search_conventional_command, args, f"{method} search")
        score, score_name = self._search_score(method, Path(folder))
        return SearchOutcome(str(Path(folder) / "genotype.json"), counter.kimg, score=score, score_name=score_name)

    @staticmethod
    def _search_score(method, folder):
        """The searcher's own score of the architecture it returned (lower is better), where it records
        one: AutoGAN's and AGAN's reward IS (negated; ``proxy_is`` with --proxy), alphaGAN's last duality
        gap, DEGAS's last validation loss; DGGAN's is not kept in its genotype: None."""
        if method in ("autogan", "agan"):
            source = json.loads((folder / "genotype.json").read_text()).get("source") or {}
            for key in ("is", "proxy_is"):
                if source.get(key) is not None:
                    return -float(source[key]), f"-{key} (the search's reward)"
            return None, None
        key = {"alphagan": "duality_gap", "degas": "val_loss"}.get(method)
        if key is None or not (folder / "log.jsonl").is_file():
            return None, None
        values = [json.loads(line).get(key) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        values = [v for v in values if v is not None]
        return (values[-1], f"{key} (last iteration)") if values else (None, None)

    def random(self, method, seed, folder):
        from .counting import count_images
        from .random_search import sample_agan, sample_alphagan_cells, sample_autogan, sample_degas, sample_dggan

        space = self.SPACES[method]
        dggan_args = self.ctx.budget.conventional["search"]["dggan"]
        dggan_preset = dggan_args[dggan_args.index("--preset") + 1] if "--preset" in dggan_args else "paper"
        samplers = {"autogan": sample_autogan, "alphagan_conv": sample_alphagan_cells, "degas": sample_degas,
                    "agan": sample_agan, "dggan": lambda rng, res: sample_dggan(rng, res, dggan_preset)}
        score_kind = self.SCORES.get(method, "fid")
        steps = self.ctx.budget.conventional["candidate_steps"]

        def evaluate(genotype, cand_dir):
            with count_images() as counter:
                checkpoint = self.retrain(str(Path(cand_dir) / "genotype.json"), seed, Path(cand_dir) / "train",
                                          steps=steps)
            if score_kind == "is":
                return -self.ctx.candidate_is(checkpoint), counter.kimg
            return self.ctx.candidate_fid(checkpoint), counter.kimg

        result = random_search(lambda rng: samplers[space](rng, self.ctx.resolution), evaluate,
                               self.budget_kimg(method, seed), seed, folder, log=self.ctx.log)
        name = ("-IS" if score_kind == "is" else "FID") + f" of {self.ctx.budget.candidate_fid_num} images after " \
               f"{steps} G steps"
        return SearchOutcome(result["best"]["genotype"], result["kimg"], score=result["best"]["score"],
                             score_name=name, candidates=len(result["candidates"]))

    def retrain(self, genotype, seed, folder, steps=None):
        from ..conventional.commands import train_conventional_command

        args = list(self.ctx.budget.conventional["retrain"])
        if steps is not None:  # a random-search candidate: the same recipe, briefly
            if "--steps" in args:
                del args[args.index("--steps"):args.index("--steps") + 2]
            args += ["--steps", steps]
        folder = fresh_folder(folder)
        run_command(train_conventional_command, ["--genotype", genotype, "--outdir", folder, "--seed", seed,
                                                 "--loss", "hinge", *self._options(), *args], "retraining")
        return str(folder / "checkpoint.pt")


FAMILIES["conventional"] = ConventionalFamily
