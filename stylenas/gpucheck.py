"""``stylenas gpu-check`` (also ``make gpu-check``, ``scripts/gpu_check.py``): everything a first GPU
should tell us, in one command of a few minutes on one GPU, recorded in one JSON file and a markdown
snippet for docs/benchmarks.md.

Steps, each run as its own process (a CUDA error in one cannot poison the others) with a time limit;
a failing step is recorded with its error and the next one runs:

  cuda_tests    ``pytest -m cuda`` over tests/ (counts from its JUnit report)
  ops_check     ``python -m stylenas.ops check``: every kernel against its reference
  bench_ops     ``stylenas bench-ops`` (NVlabs' plugin too with --nvlabs)
  bench_fid     ``stylenas bench-fid`` on the GPU
  bench_train   ``stylenas bench-train`` (NVlabs' networks and loss too with --nvlabs)
  demo_data     synthetic images at 256 px (``stylenas make-demo-data``), no download
  search        20 alphaGAN iterations at 256 px with the paper's preset (``--preset stylegan2``)
  train         0.5 kimg of retraining at 256 px: the paper's Table 9 LSUN-church architecture with
                the paper's retraining preset (``--cfg paper`` where it exists, else config-f)

Output folder: ``gpu-check.json`` (device, date, versions, every step's result or error and
seconds), ``gpu-check.md`` (the snippet), ``gpu-check-logs/<step>.txt`` (each step's output) and
``gpu-check-work/`` (demo data, the search and training runs, the benchmarks' JSON; a new check
replaces it).
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import click

from .io import atomic_path, dump_json

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 470  # the whole check: under 8 minutes with the start-up around it
MIN_STEP_S = 10  # a step given less is not started
STEP_TIMEOUT_S = {"cuda_tests": 240, "ops_check": 240, "bench_ops": 120, "bench_fid": 120, "bench_train": 180,
                  "demo_data": 120, "search": 240, "train": 240}


@dataclass
class Plan:
    """What each step runs: the GPU plan (``gpu_plan``) or, for the CPU test of the orchestration, the
    same steps at tiny sizes (``cpu_plan``)."""

    device: str
    tests: list  # paths given to pytest -m cuda
    ops_check: list  # arguments of python -m stylenas.ops
    bench_ops: list
    bench_fid: list
    bench_train: list
    demo_sizes: list
    demo_num: int
    search: list
    train: list
    timeouts: dict = field(default_factory=lambda: dict(STEP_TIMEOUT_S))


def paper_cfg():
    """The alphaGAN paper's retraining preset if this StyleNAS has it, else config-f (its base)."""
    from .train.config import CFG_NAMES

    return "paper" if "paper" in CFG_NAMES else "stylegan2"


def gpu_plan(nvlabs=None):
    nv = ["--nvlabs", str(nvlabs)] if nvlabs else []
    return Plan(
        device="cuda", tests=[str(REPO / "tests")], ops_check=["check"],
        bench_ops=["--device", "cuda", "--repeats", "5", *nv],
        bench_fid=["--device", "cuda", "--batch", "8", "--repeats", "3", "--slow-repeats", "1"],
        bench_train=["--device", "cuda", "--resolution", "256", "--steps", "16", *nv],
        demo_sizes=[256], demo_num=96,
        search=["--preset", "stylegan2", "--iters", "20", "--resolution", "256", "--workers", "2"],
        train=["--genotype", "alphagan_church256", "--cfg", paper_cfg(), "--kimg", "0.5", "--snap", "0.5",
               "--workers", "2"])


def cpu_plan():
    """The same steps, sized for a CPU in seconds (``--allow-cpu``): the orchestration, every
    sub-command and every result reader run for real; only the sizes differ."""
    return Plan(
        device="cpu", tests=[str(REPO / "tests" / "test_ops_cuda.py")], ops_check=["check", "--auto"],
        bench_ops=["--device", "cpu", "--quick", "--repeats", "1"],
        bench_fid=["--device", "cpu", "--dims", "64", "--samples", "256", "--batch", "2", "--repeats", "1",
                   "--few-samples", "0"],
        bench_train=["--device", "cpu", "--resolution", "8", "--cfg", "tiny", "--batch", "4", "--steps", "1"],
        demo_sizes=[16], demo_num=16,
        search=["--preset", "tiny", "--iters", "2", "--resolution", "16", "--workers", "0"],
        train=["--genotype", "stylegan2", "--cfg", "tiny", "--batch", "4", "--mbstd-group", "2", "--kimg", "0.008",
               "--snap", "0.008", "--workers", "0"])


class StepFailed(RuntimeError):
    """A step's process failed: the message is the tail of its output."""


def run_process(argv, log_path, timeout):
    """Run ``argv`` with its output in ``log_path``; StepFailed with the last lines if it fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        try:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"timed out after {timeout} s (output: {log_path})") from None
    text = log_path.read_text(errors="replace")
    return done.returncode, text


def tail(text, lines=6):
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def stylenas_cli(*args):
    return [sys.executable, "-m", "stylenas", *map(str, args)]


# ---------------------------------------------------------------------------------------------- steps
# Each takes (plan, folders) and returns a JSON-ready result, or raises (the error is recorded).

def step_cuda_tests(plan, folders):
    report = folders["work"] / "cuda-tests.xml"
    rc, text = run_process([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={report}", *plan.tests], folders["logs"] / "cuda_tests.txt",
                           plan.timeouts["cuda_tests"])
    if rc == 5:
        raise StepFailed("pytest collected no CUDA tests")
    if not report.is_file():
        raise StepFailed(f"pytest exited {rc} without a report: {tail(text)}")
    suites = ElementTree.parse(report).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors",
                                                                              "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [f"{case.get('classname')}.{case.get('name')}" for suite in suites for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    result = {**counts, "failed": failed[:20], "exit_code": rc}
    if rc != 0:
        raise StepFailed(f"{counts['failures']} failed, {counts['errors']} errors of {counts['tests']}: "
                         f"{', '.join(failed[:5])}", result)
    return result


def step_ops_check(plan, folders):
    rc, text = run_process([sys.executable, "-m", "stylenas.ops", *plan.ops_check], folders["logs"] / "ops_check.txt",
                           plan.timeouts["ops_check"])
    ops = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1] in ("ok", "FAIL"):
            ops[parts[0]] = {"ok": parts[1] == "ok", "max_rel_error": _number(parts[2]), "tolerance": _number(parts[3])}
    result = {"ops": ops, "exit_code": rc, "output": tail(text, 3)}
    if rc != 0:
        raise StepFailed(f"exit {rc}: {tail(text)}", result)
    return result


def _number(text):
    try:
        return float(text)
    except ValueError:
        return text


def json_step(name, command):
    """A step that runs ``stylenas COMMAND ... --out FILE`` and returns FILE's JSON."""
    def step(plan, folders):
        out = folders["work"] / f"{name}.json"
        rc, text = run_process(stylenas_cli(command, *getattr(plan, name), "--out", out),
                               folders["logs"] / f"{name}.txt", plan.timeouts[name])
        if rc != 0 or not out.is_file():
            raise StepFailed(f"exit {rc}: {tail(text)}")
        return json.loads(out.read_text())
    return step


def step_demo_data(plan, folders):
    lmdb = folders["work"] / "demo.lmdb"
    sizes = [arg for size in plan.demo_sizes for arg in ("--size", size)]
    rc, text = run_process(stylenas_cli("make-demo-data", "--out", lmdb, *sizes, "--num", plan.demo_num, "--force"),
                           folders["logs"] / "demo_data.txt", plan.timeouts["demo_data"])
    if rc != 0:
        raise StepFailed(f"exit {rc}: {tail(text)}")
    return {"path": str(lmdb), "sizes": plan.demo_sizes, "images": plan.demo_num}


def read_log(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def step_search(plan, folders):
    out = folders["work"] / "search"
    rc, text = run_process(stylenas_cli("search", "--data", folders["work"] / "demo.lmdb", "--outdir", out,
                                        "--device", plan.device, "--sample-every", 0, "--checkpoint-every", 0,
                                        *plan.search), folders["logs"] / "search.txt", plan.timeouts["search"])
    if rc != 0:
        raise StepFailed(f"exit {rc}: {tail(text)}")
    records = read_log(out / "log.jsonl")
    seconds = [record["seconds"] for record in records]
    steady = seconds[1:] or seconds  # the first iteration includes warm-up (cuDNN autotuning, allocations)
    config = json.loads((out / "config.json").read_text())
    return {"iterations": len(records), "seconds_per_iteration_median": statistics.median(steady),
            "seconds_first_iteration": seconds[0], "seconds_total": sum(seconds),
            "resolution": config["resolution"]["value"], "preset": config["preset"]["value"],
            "batch": config["batch"]["value"], "duality_gap_last": records[-1].get("duality_gap"),
            "genotype": json.loads((out / "genotype.json").read_text())["paradigm"]}


def step_train(plan, folders):
    out = folders["work"] / "train"
    rc, text = run_process(stylenas_cli("train", "--data", folders["work"] / "demo.lmdb", "--outdir", out,
                                        "--device", plan.device, *plan.train), folders["logs"] / "train.txt",
                           plan.timeouts["train"])
    if rc != 0:
        raise StepFailed(f"exit {rc}: {tail(text)}")
    last = read_log(out / "log.jsonl")[-1]
    config = json.loads((out / "config.json").read_text())
    keys = ("kimg", "step", "s_per_kimg", "s_per_step", "memory_gb", "loss_G", "loss_D", "nan_count")
    return {**{key: last.get(key) for key in keys}, "cfg": config["cfg"]["value"],
            "resolution": config["resolution"]["value"], "batch": config["batch"]["value"],
            "genotype": config["genotype_source"]["value"]}


STEPS = {
    "cuda_tests": step_cuda_tests,
    "ops_check": step_ops_check,
    "bench_ops": json_step("bench_ops", "bench-ops"),
    "bench_fid": json_step("bench_fid", "bench-fid"),
    "bench_train": json_step("bench_train", "bench-train"),
    "demo_data": step_demo_data,
    "search": step_search,
    "train": step_train,
}


# ---------------------------------------------------------------------------------------------- the run

def device_info(device):
    import torch

    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "host": platform.node()}
    try:
        from importlib.metadata import version
        info["stylenas"] = version("stylenas")
    except Exception:  # not installed as a distribution (a bare checkout)
        info["stylenas"] = None
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), gpu_memory_gb=round(props.total_memory / 2 ** 30, 1),
                    compute_capability=f"{props.major}.{props.minor}", gpus_visible=torch.cuda.device_count())
    else:
        info.update(device=f"cpu ({platform.processor() or platform.machine()}; orchestration test, not a benchmark)")
    return info


def run(outdir, plan, log=lambda line: None, steps=None, budget_s=BUDGET_S):
    """Run every step of ``plan`` (or the named ``steps``) within ``budget_s`` seconds in all (each
    step's limit is cut to what is left; once it is spent the remaining steps are recorded as not
    run); returns the report dict, also written to OUTDIR/gpu-check.json with the snippet in
    OUTDIR/gpu-check.md."""
    outdir = Path(outdir)
    folders = {"work": outdir / "gpu-check-work", "logs": outdir / "gpu-check-logs"}
    for run_folder in ("search", "train"):  # a previous check's runs: theirs would refuse to start again
        shutil.rmtree(folders["work"] / run_folder, ignore_errors=True)
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    report = {**device_info(plan.device), "plan": plan.device, "budget_s": budget_s, "steps": {}}
    started = time.perf_counter()
    for name in steps or STEPS:
        left = int(budget_s - (time.perf_counter() - started))
        if left < MIN_STEP_S:
            report["steps"][name] = {"ok": False, "error": f"not run: the {budget_s} s budget was spent", "seconds": 0}
            continue
        log(f"[gpu-check] {name} ...")
        tic = time.perf_counter()
        try:
            entry = {"ok": True, "result": STEPS[name](replace(plan, timeouts={**plan.timeouts, name: min(
                plan.timeouts[name], left)}), folders)}
        except StepFailed as error:
            entry = {"ok": False, "error": str(error.args[0])}
            if len(error.args) > 1:
                entry["result"] = error.args[1]
        except Exception as error:  # a reader that met an unexpected file: record it, go on
            entry = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        entry["seconds"] = round(time.perf_counter() - tic, 2)
        report["steps"][name] = entry
        log(f"[gpu-check] {name}: {'ok' if entry['ok'] else 'FAILED: ' + entry['error']} ({entry['seconds']} s)")
        dump_json(report, outdir / "gpu-check.json")  # a killed check keeps what it measured
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    report["all_ok"] = all(entry["ok"] for entry in report["steps"].values())
    dump_json(report, outdir / "gpu-check.json")
    with atomic_path(outdir / "gpu-check.md") as tmp:
        tmp.write_text(markdown(report))
    return report


# ---------------------------------------------------------------------------------------------- snippet

def figures(name, result):
    """The headline figures of one step's result, one short line."""
    if not result:
        return ""
    if name == "cuda_tests":
        return f"{result['passed']} passed, {result['failures'] + result['errors']} failed, {result['skipped']} skipped"
    if name == "ops_check":
        return ", ".join(f"{op} {'ok' if r['ok'] else 'FAIL'} ({r['max_rel_error']:.1e})"
                         if isinstance(r["max_rel_error"], float) else f"{op} {'ok' if r['ok'] else 'FAIL'}"
                         for op, r in result["ops"].items()) or result.get("output", "")
    if name == "bench_ops":
        rows = [f"{row['op']} x{row['speedup_vs_ref']:.2f}" + (f" (vs NVlabs x{row['speedup_vs_nvlabs']:.2f})"
                                                               if "speedup_vs_nvlabs" in row else "")
                for row in result.get("results", []) if "speedup_vs_ref" in row]
        return ("CUDA vs reference: " + ", ".join(rows)) if rows else \
            f"references only ({len(result.get('results', []))} cases, kernels {result.get('kernels')})"
    if name == "bench_fid":
        parts = [f"one FID {key} x{value:.1f}" for key, value in result.get("speedup", {}).items()]
        batched = result.get("batched", {})
        if batched:
            parts.append(f"batched B={batched['B']} x{batched['speedup_vs_looped']:.1f} vs looped")
        for count, entry in (result.get("eigvalsh_on_gpu") or {}).items():
            if "kernel_speedup_vs_cusolver" in entry:
                parts.append(f"eigvalsh kernel x{entry['kernel_speedup_vs_cusolver']:.1f} vs cuSOLVER ({count})")
        return ", ".join(parts)
    if name == "bench_train":
        text = (f"{result['cfg']} {result['resolution']} px batch {result['batch']}: "
                f"{result['ours_s_per_kimg']:.2f} s/kimg")
        if "nvlabs_s_per_kimg" in result:
            text += f", NVlabs {result['nvlabs_s_per_kimg']:.2f} s/kimg (x{result['speedup_vs_nvlabs']:.2f})"
        return text
    if name == "demo_data":
        return f"{result['images']} images at {', '.join(map(str, result['sizes']))} px"
    if name == "search":
        return (f"{result['iterations']} iterations at {result['resolution']} px ({result['preset']}, batch "
                f"{result['batch']}): {result['seconds_per_iteration_median']:.2f} s/iteration (first "
                f"{result['seconds_first_iteration']:.1f} s)")
    if name == "train":
        return (f"{result['genotype']} at {result['resolution']} px, cfg {result['cfg']}, batch {result['batch']}: "
                f"{result['s_per_kimg']:.1f} s/kimg, {result['memory_gb']:.1f} GB peak, {result['nan_count']} NaN "
                f"gradient entries")
    return ""


def markdown(report):
    """The snippet for docs/benchmarks.md."""
    lines = [f"### gpu-check: {report['device']}, {report['date'][:10]}", "",
             f"StyleNAS {report.get('stylenas') or '(checkout)'}, torch {report['torch']}, CUDA {report['cuda']}; "
             f"{report.get('seconds_total', '?')} s in all. Full figures: `gpu-check.json`.", "",
             "| step | status | seconds | figures |", "|---|---|---|---|"]
    for name, entry in report["steps"].items():
        try:
            text = figures(name, entry.get("result"))
        except (KeyError, TypeError, ValueError) as error:
            text = f"(figures unreadable: {error})"
        if not entry["ok"]:
            text = f"**{entry['error']}**" + (f"; {text}" if text else "")
        lines.append(f"| {name} | {'ok' if entry['ok'] else 'FAILED'} | {entry['seconds']} | "
                     f"{text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


@click.command("gpu-check")
@click.option("--out", "outdir", default="gpu-check", show_default=True, type=click.Path(file_okay=False),
              help="Folder for gpu-check.json, gpu-check.md, the steps' logs and work files.")
@click.option("--nvlabs", type=click.Path(exists=True, file_okay=False),
              help="A stylegan2-ada-pytorch checkout: bench-ops and bench-train time NVlabs' code beside ours.")
@click.option("--steps", help=f"Only these steps, comma-separated ({', '.join(STEPS)}; search and train need "
              "demo_data).")
@click.option("--budget", type=click.IntRange(min=1), default=BUDGET_S, show_default=True,
              help="Seconds for the whole check; steps that would start after it are recorded as not run.")
@click.option("--allow-cpu", is_flag=True, hidden=True,
              help="Run the same steps at tiny sizes on the CPU (tests the orchestration; no benchmark).")
def gpu_check_command(outdir, nvlabs, steps, budget, allow_cpu):
    """On one GPU, in a few minutes: the CUDA tests, the kernels' self-checks, bench-ops, bench-fid,
    bench-train, 20 alphaGAN iterations and 0.5 kimg of retraining at 256 px; writes one JSON with
    every figure and a markdown snippet for docs/benchmarks.md."""
    import torch

    names = [name.strip() for name in steps.split(",")] if steps else None
    unknown = [name for name in names or [] if name not in STEPS]
    if unknown:
        raise click.BadParameter(f"unknown step(s) {', '.join(unknown)}; expected {', '.join(STEPS)}",
                                 param_hint="--steps")
    if torch.cuda.is_available():
        plan = gpu_plan(nvlabs)
    elif allow_cpu:
        plan = cpu_plan()
    else:
        raise click.ClickException("no CUDA GPU visible: gpu-check measures a GPU and needs one "
                                   "(CUDA_VISIBLE_DEVICES, driver?)")
    report = run(outdir, plan, log=lambda line: click.echo(line, err=True), steps=names, budget_s=budget)
    click.echo((Path(outdir) / "gpu-check.md").read_text())
    click.echo(f"{Path(outdir) / 'gpu-check.json'}: {sum(e['ok'] for e in report['steps'].values())} of "
               f"{len(report['steps'])} steps ok in {report['seconds_total']} s")
    sys.exit(0 if report["all_ok"] else 1)
