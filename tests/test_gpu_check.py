"""stylenas gpu-check: refuses without a GPU in one line; its plan, run for real at tiny sizes on the CPU,
records every step's figures in one JSON and a markdown row per step; a failing step is recorded and the
others still run."""
import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from stylenas import gpucheck
from stylenas.cli import main as stylenas_main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_refuses_without_a_gpu_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(stylenas_main, ["gpu-check", "--out", str(tmp_path / "gc")])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU visible" in lines[0]
    assert not (tmp_path / "gc").exists()
    result = CliRunner().invoke(stylenas_main, ["gpu-check", "--allow-cpu", "--steps", "bench_ops,nonsense"])
    assert result.exit_code != 0 and "nonsense" in result.output


@pytest.mark.slow
def test_the_cpu_plan_runs_every_step_and_records_its_figures(tmp_path):
    out = tmp_path / "gc"
    report = gpucheck.run(out, gpucheck.cpu_plan())
    assert list(report["steps"]) == list(gpucheck.STEPS)
    failed = {name: entry["error"] for name, entry in report["steps"].items() if not entry["ok"]}
    assert not failed and report["all_ok"]
    saved = json.loads((out / "gpu-check.json").read_text())
    assert saved == report and saved["device"].startswith("cpu") and saved["date"][:2] == "20"
    steps = saved["steps"]
    assert steps["cuda_tests"]["result"]["skipped"] == steps["cuda_tests"]["result"]["tests"] > 0  # no GPU here
    assert steps["bench_train"]["result"]["ours_s_per_kimg"] > 0 and steps["bench_train"]["result"]["resolution"] == 8
    assert steps["search"]["result"]["iterations"] == 2 and steps["search"]["result"]["resolution"] == 16
    assert steps["train"]["result"]["kimg"] >= 0.008 and steps["train"]["result"]["s_per_kimg"] > 0
    assert steps["bench_fid"]["result"]["dims"] == 64
    snippet = (out / "gpu-check.md").read_text()
    for name in gpucheck.STEPS:
        assert f"| {name} | ok |" in snippet
    assert "2 iterations at 16 px" in snippet
    again = gpucheck.run(out, gpucheck.cpu_plan(), steps=["search"])  # a second check replaces the first's runs
    assert again["steps"]["search"]["ok"], again["steps"]["search"].get("error")


def test_a_failing_step_is_recorded_and_the_next_still_runs(tmp_path):
    plan = replace(gpucheck.cpu_plan(), bench_train=["--device", "cpu", "--steps", "0"])
    report = gpucheck.run(tmp_path / "gc", plan, steps=["bench_train", "demo_data"])
    steps = report["steps"]
    assert not steps["bench_train"]["ok"] and "--steps must be at least 1" in steps["bench_train"]["error"]
    assert steps["demo_data"]["ok"] and not report["all_ok"]
    assert (tmp_path / "gc" / "gpu-check-logs" / "bench_train.txt").is_file()
    assert "| bench_train | FAILED |" in (tmp_path / "gc" / "gpu-check.md").read_text()


def test_steps_past_the_budget_are_recorded_as_not_run(tmp_path):
    report = gpucheck.run(tmp_path / "gc", gpucheck.cpu_plan(), steps=["demo_data", "train"],
                          budget_s=gpucheck.MIN_STEP_S - 1)
    expected = f"not run: the {gpucheck.MIN_STEP_S - 1} s budget was spent"
    assert [entry["error"] for entry in report["steps"].values()] == [expected] * 2
    assert not (tmp_path / "gc" / "gpu-check-work" / "demo.lmdb").exists()
