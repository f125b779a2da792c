"""scripts/search_stylegan2.py end to end on an LMDB of demo images, and its one-line errors."""
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from stylenas.datasets import make_demo_data
from stylenas.search.genotype import Genotype

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "search_stylegan2.py"


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("search_stylegan2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def demo_lmdb(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo.lmdb"
    make_demo_data(str(path), [16], 24, progress=False)
    return path


@pytest.mark.slow
def test_search_on_an_lmdb_writes_a_genotype(cli, demo_lmdb, tmp_path):
    out = tmp_path / "search"
    result = CliRunner().invoke(cli, ["--data", str(demo_lmdb), "--outdir", str(out), "--preset", "tiny",
                                      "--iters", "2", "--space", "macro", "--no-dynamic-w", "--sample-every", "1",
                                      "--loss", "logistic"])
    assert result.exit_code == 0, result.output
    genotype = Genotype.load(out / "genotype.json")
    assert genotype.resolution == 16 and genotype.paradigm == "macro"
    assert genotype.source["settings"]["data"] == str(demo_lmdb)
    assert genotype.source["settings"]["loss"] == "logistic"
    assert (out / "samples" / "iter000002.png").is_file() and (out / "alphas.png").is_file()
    assert "macro at 16px: 243 architectures" in result.output  # 3^5: five conv layers
    assert json.loads((out / "genotype.json").read_text())["space_size"] == 243
    resumed = CliRunner().invoke(cli, ["--data", str(demo_lmdb), "--outdir", str(out), "--preset", "tiny",
                                       "--iters", "3", "--space", "macro", "--no-dynamic-w", "--loss", "logistic",
                                       "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert Genotype.load(out / "genotype.json").source["iterations"] == 3


@pytest.mark.parametrize("args,message", [
    (["--resolution", "64"], "resolution 64 is not stored"),
    (["--resolution", "24"], "power of two"),
    (["--batch", "16"], "too few to split"),
])
def test_errors_are_one_line(cli, demo_lmdb, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["--data", str(demo_lmdb), "--outdir", str(tmp_path / "s"), "--preset", "tiny",
                                      "--iters", "1", *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s" / "genotype.json").exists()


def test_missing_lmdb(cli, tmp_path):
    result = CliRunner().invoke(cli, ["--data", str(tmp_path / "missing.lmdb"), "--outdir", str(tmp_path / "s"),
                                      "--preset", "tiny"])
    assert result.exit_code != 0 and "missing.lmdb" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_resume_recognises_the_data_by_content_not_by_path(cli, tmp_path):
    first = tmp_path / "a" / "demo.lmdb"
    make_demo_data(str(first), [16], 24, progress=False)
    out = tmp_path / "search"
    args = ["--outdir", str(out), "--preset", "tiny", "--space", "micro", "--workers", "0", "--sample-every", "0"]
    assert CliRunner().invoke(cli, ["--data", str(first), "--iters", "1", *args]).exit_code == 0
    moved = tmp_path / "b" / "moved.lmdb"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    resumed = CliRunner().invoke(cli, ["--data", str(moved), "--iters", "2", "--resume", *args])
    assert resumed.exit_code == 0, resumed.output
    assert Genotype.load(out / "genotype.json").source["iterations"] == 2
    # other images, same count and size: refused
    other = tmp_path / "other.lmdb"
    make_demo_data(str(other), [16], 24, seed=1, progress=False)
    refused = CliRunner().invoke(cli, ["--data", str(other), "--iters", "3", "--resume", *args])
    assert refused.exit_code != 0 and "searched on other data (24 images of 16px" in refused.output
    assert "Traceback" not in refused.output


def test_cifar_presets_are_not_offered(cli, demo_lmdb, tmp_path):
    result = CliRunner().invoke(cli, ["--data", str(demo_lmdb), "--outdir", str(tmp_path / "s"), "--preset", "s"])
    assert result.exit_code == 2 and "'stylegan2', 'tiny'" in result.output


def test_unexpected_errors_keep_their_traceback(cli, demo_lmdb, tmp_path, monkeypatch):
    from stylenas.search import commands

    def broken(config):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(commands, "run_search", broken)
    result = CliRunner().invoke(cli, ["--data", str(demo_lmdb), "--outdir", str(tmp_path / "s")])
    assert isinstance(result.exception, ValueError)  # not turned into a one-line message
