"""config.json of a run: every resolved setting with a non-empty source, values equal to what the run
used (read back from its checkpoint / search state, not from the writer), and the docs' tables equal
to the ones generated from the code."""
import json
from dataclasses import fields

import pytest
import torch
from click.testing import CliRunner

from stylenas import docs_tables
from stylenas.config_sources import MISSING, Entry, markdown_table, sourced, values_of
from stylenas.datasets import make_demo_data
from stylenas.search import sources as search_sources
from stylenas.search.alphagan import PRESETS
from stylenas.search.commands import search_command
from stylenas.search.run import SearchConfig
from stylenas.train import sources as train_sources
from stylenas.train.commands import train_command
from stylenas.train.config import TrainConfig, resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo_lmdb(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo.lmdb"
    make_demo_data(str(path), [8, 16], 24, progress=False)
    return path


def assert_every_value_sourced(record):
    for name, item in record.items():
        assert set(item) == {"value", "source"}, name
        assert isinstance(item["source"], str) and item["source"].strip(), name
        assert MISSING not in item["source"], f"{name}: {item['source']}"


def test_a_train_run_records_every_setting_with_its_source(demo_lmdb, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(train_command, [
        "--data", str(demo_lmdb), "--genotype", "stylegan2", "--resolution", "8", "--outdir", str(out),
        "--cfg", "tiny", "--batch", "4", "--mbstd-group", "2", "--kimg", "0.004", "--snap", "0.004",
        "--gamma", "0.5", "--device", "cpu", "--workers", "0"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert_every_value_sourced(record)
    used = torch.load(out / "checkpoint.pt", weights_only=True)["config"]  # what the trainer ran with
    values = values_of(record)
    assert {name: values[name] for name in used} == used
    assert set(values) == set(used) | {"processes", "data", "genotype_source"}
    assert values["processes"] == 1 and values["genotype_source"] == "stylegan2"
    assert record["gamma"]["source"].startswith("command line: --gamma")
    assert record["lr"]["source"] == train_sources.TABLE["lr"].by_preset["tiny"]
    assert "on the CPU" in record["fp16_res"]["source"] and values["fp16_res"] == 0


def test_a_search_run_records_every_setting_with_its_source(demo_lmdb, tmp_path):
    out = tmp_path / "search"
    result = CliRunner().invoke(search_command, [
        "--data", str(demo_lmdb), "--outdir", str(out), "--preset", "tiny", "--iters", "1", "--batch", "3",
        "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert_every_value_sourced(record)
    values = values_of(record)
    state = torch.load(out / "search-state.pt", weights_only=True)
    settings = state["settings"]  # what the searcher ran with (and what --resume compares)
    for name in ("space", "dynamic_w", "torgb_w", "resolution", "preset", "batch", "channel_mult", "loss", "seed",
                 "dataset"):
        assert values[name] == settings[name], name
    preset = PRESETS["tiny"]
    assert (values["T"], values["R"], values["S"], values["iterations"]) == (preset.T, preset.R, preset.S, 1)
    assert (values["arch_lr"], tuple(values["arch_betas"])) == (preset.arch_lr, preset.arch_betas)
    assert values["batch"] == 3 and record["batch"]["source"].startswith("command line: --batch")
    assert record["iterations"]["source"].startswith("command line: --iters")
    assert record["T"]["source"] == search_sources.TINY


def test_every_setting_of_both_methods_has_an_entry():
    train_fields = {f.name for f in fields(TrainConfig)}
    assert train_fields <= set(train_sources.TABLE), train_fields - set(train_sources.TABLE)
    search_fields = {f.name for f in fields(SearchConfig)} - {"iters"}  # recorded as the resolved "iterations"
    assert search_fields <= set(search_sources.TABLE), search_fields - set(search_sources.TABLE)
    for table in (train_sources.TABLE, search_sources.TABLE):
        for name, entry in table.items():
            assert entry.source.split(":")[0] in ("paper", "authors' code", "StyleNAS choice"), name
            assert bool(entry.deviation) == bool(entry.restore), f"{name}: a deviation needs its restoring switch"


def test_sourced_marks_command_line_and_forced_values():
    table = {"a": Entry("paper: s. 1", {"tiny": "StyleNAS choice: small"}), "b": Entry("authors' code: f.py")}
    record = sourced({"a": 1, "b": 2, "c": 3}, table, preset="tiny", from_command_line={"b": "--b"})
    assert record["a"] == {"value": 1, "source": "StyleNAS choice: small"}
    assert record["b"]["source"] == "command line: --b (default: authors' code: f.py)"
    assert record["c"]["source"] == MISSING
    assert values_of({"x": record}) == {"x": {"a": 1, "b": 2, "c": 3}}  # nesting by component


def test_docs_tables_equal_the_code(tmp_path):
    changed, found = docs_tables.update(check=True)
    assert found == set(docs_tables.TABLES) and not changed, f"run python -m stylenas.docs_tables: {changed}"
    stale = tmp_path / "m.md"  # and the rewrite puts the generated table between the markers
    stale.write_text("x\n<!-- table:stylegan2-train -->\nold\n<!-- end table:stylegan2-train -->\ny\n")
    docs_tables.update(tmp_path)
    table = markdown_table(train_sources.TABLE, ("paper", "tiny"))
    assert stale.read_text() == f"x\n<!-- table:stylegan2-train -->\n{table}\n<!-- end table:stylegan2-train -->\ny\n"
    assert "| `pl_weight` |" in table and "--pl-weight 0" in table


# alphaGAN (arXiv:2006.09134v2), transcribed independently of the code: appendix .1.2 (the StyleGAN2
# search: "alphaGAN (s), with T = 20, S = 20, and R = 5", 500 iterations, batch 2, 1/8 of StyleGAN2's
# channels) and appendix .1.1.1 (alphaGAN (s)'s optimisers, which .1.2 adopts).
PAPER_SEARCH = {"T": 20, "S": 20, "R": 5, "iterations": 500, "batch": 2, "channel_mult": 1 / 8, "lr": 2e-4,
                "betas": [0.0, 0.999], "arch_lr": 3e-4, "arch_betas": [0.5, 0.999], "arch_weight_decay": 1e-3,
                "loss": "hinge", "space": "micro", "dynamic_w": True, "torgb_w": "tied"}


def test_the_paper_preset_search_records_the_papers_values(demo_lmdb, tmp_path):
    """A search with the paper's preset (stopped after 0 of its iterations) records appendix .1.2's
    settings, each citing the paper."""
    out = tmp_path / "search"
    result = CliRunner().invoke(search_command, [
        "--data", str(demo_lmdb), "--outdir", str(out), "--preset", "stylegan2", "--resolution", "8",
        "--iters", "0", "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["iterations"]["source"].startswith("command line: --iters (default: paper:")
    assert PRESETS["stylegan2"].iterations == PAPER_SEARCH["iterations"]
    for name, value in PAPER_SEARCH.items():
        if name != "iterations":
            assert record[name]["value"] == pytest.approx(value), name
            assert record[name]["source"].startswith("paper:"), name


# NVlabs stylegan2-ada-pytorch train.py cfg_specs['stylegan2'] (config-f), which the alphaGAN paper's
# retraining takes (appendix .1.2), and the paper's one change: no path-length regulariser.
CONFIG_F = {"batch": 32, "mbstd_group": 4, "channel_base": 32768, "channel_max": 512, "lr": 0.002, "gamma": 10,
            "ema_kimg": 10, "mapping_layers": 8}


def test_the_paper_retraining_preset_records_config_f_without_path_length():
    record = train_sources.train_record(resolve_config("paper", 256), {}, {"processes": 1, "data": "x.lmdb",
                                                                          "genotype_source": "alphagan_church256"})
    assert_every_value_sourced(record)
    for name, value in CONFIG_F.items():
        assert record[name]["value"] == value, name
        if name not in ("channel_max", "mapping_layers"):  # not cfg_specs values: NVlabs' networks, our choice
            assert record[name]["source"].startswith("paper: alphaGAN appendix .1.2"), name
    assert record["pl_weight"]["value"] == 0 and "abandon the regularization term" in record["pl_weight"]["source"]
