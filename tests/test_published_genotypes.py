"""The alphaGAN paper's Table 9 architectures as named genotypes: built at config-f widths they have
Table 8's generator sizes, the columns are read as the docs say, and the names work wherever a
genotype file does (``stylenas.search.load_genotype``, ``stylenas train --genotype``)."""
import json

import pytest
from click.testing import CliRunner

from stylenas.datasets import make_demo_data
from stylenas.search import Genotype, GenotypeError, load_genotype
from stylenas.search.published import PUBLISHED_NAMES
from stylenas.train.commands import train_command

pytestmark = pytest.mark.usefixtures("one_thread")

# alphaGAN (arXiv:2006.09134v2) Table 8, "Model size (M)", transcribed as printed: two decimals, so a
# count matches when it is within half a unit of the last digit, 0.005 M = 5000 parameters.
TABLE_8_MODEL_SIZE_M = {
    "alphagan_celeba128": 29.33,   # alphaGAN (s) + micro + dynamic {W_i}, CelebA
    "alphagan_church256": 52.32,   # ... LSUN church
    "alphagan_ffhq1024": 52.73,    # ... FFHQ
}
# The same table's StyleGAN2 rows (the original architecture at the three resolutions): they pin what
# "model size" counts (G with its mapping network, config-f widths, no D).
TABLE_8_STYLEGAN2_M = {128: 29.33, 256: 30.03, 1024: 30.37}
ROUNDING_M = 0.005


def generator_millions(genotype):
    G = genotype.build_generator()  # the genotype's channels: config-f, channel_base 32768, max 512
    return sum(p.numel() for p in G.parameters()) / 1e6


@pytest.mark.parametrize("name", PUBLISHED_NAMES)
def test_table9_genotypes_have_table8_sizes_at_config_f(name):
    genotype = load_genotype(name)
    assert genotype.channels == {"channel_base": 32768, "channel_max": 512, "channel_mult": 1.0}
    assert generator_millions(genotype) == pytest.approx(TABLE_8_MODEL_SIZE_M[name], abs=ROUNDING_M)


@pytest.mark.parametrize("resolution", sorted(TABLE_8_STYLEGAN2_M))
def test_original_stylegan2_has_table8_size(resolution):
    millions = generator_millions(load_genotype("stylegan2", resolution=resolution))
    assert millions == pytest.approx(TABLE_8_STYLEGAN2_M[resolution], abs=ROUNDING_M)


def layer(genotype, name):
    return next(entry for entry in genotype.layers if entry["name"] == name)


def test_columns_are_input_resolutions():
    """Cells of Table 9 by (row, column) as printed, and the layer each belongs to: normal W of column r
    -> b{r}.conv1; up W of column r -> b{2r}.conv0 (its input is r x r); the starred W -> the last
    toRGB; the other toRGBs read the next up conv's latent (Fig. 1)."""
    celeba = load_genotype("alphagan_celeba128")
    assert (layer(celeba, "b4.conv1")["w"], layer(celeba, "b8.conv0")["w"]) == (2, 3)      # column 4x4
    assert (layer(celeba, "b64.conv1")["w"], layer(celeba, "b128.conv0")["w"]) == (1, 3)   # column 64x64
    assert (layer(celeba, "b128.conv1")["w"], layer(celeba, "b128.torgb")["w"]) == (8, 5)  # "W_8, W_5*"
    assert layer(celeba, "b4.torgb")["w"] == layer(celeba, "b8.conv0")["w"]
    church = load_genotype("alphagan_church256")
    assert (layer(church, "b256.conv1")["w"], layer(church, "b256.torgb")["w"]) == (4, 3)  # "W_4, W_3*"
    assert layer(church, "b256.conv0")["w"] == 2  # up W of column 128x128
    assert {entry.get("op") for entry in church.layers} == {"conv_5x5", "bilinear_conv", None}
    ffhq = load_genotype("alphagan_ffhq1024")
    assert (layer(ffhq, "b1024.conv0")["w"], layer(ffhq, "b1024.torgb")["w"]) == (6, 2)
    assert {entry.get("op") for entry in ffhq.layers} == {"conv_5x5", "nearest_conv", None}
    for genotype in (celeba, church, ffhq):
        assert genotype.paradigm == "micro+dynamic_w" and genotype.torgb_w == "tied"


def test_load_genotype_reads_names_files_and_refuses_the_rest(tmp_path):
    path = tmp_path / "g.json"
    load_genotype("alphagan_church256").save(path)
    assert load_genotype(path).layers == load_genotype("alphagan_church256").layers
    assert load_genotype(str(path)).resolution == 256
    assert load_genotype("stylegan2", resolution=32).layers == Genotype.original(32).layers
    with pytest.raises(GenotypeError, match="needs a resolution"):
        load_genotype("stylegan2")
    with pytest.raises(GenotypeError, match="alphagan_celeba128"):
        load_genotype("alphagan_celeba64")
    with pytest.raises(GenotypeError, match="not found"):
        load_genotype(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def lmdb_128(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo.lmdb"
    make_demo_data(str(path), [32, 128], 8, progress=False)
    return path


def test_train_accepts_a_published_name(lmdb_128, tmp_path):
    """One tiny-width step of the CelebA architecture on 128 px data; the run records it."""
    out = tmp_path / "run"
    result = CliRunner().invoke(train_command, [
        "--data", str(lmdb_128), "--genotype", "alphagan_celeba128", "--outdir", str(out), "--cfg", "tiny",
        "--batch", "4", "--mbstd-group", "2", "--kimg", "0.004", "--snap", "0.004", "--device", "cpu",
        "--workers", "0"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "genotype.json").read_text())
    assert saved["layers"] == load_genotype("alphagan_celeba128").layers


def test_train_refuses_a_published_name_at_another_resolution(lmdb_128, tmp_path):
    result = CliRunner().invoke(train_command, [
        "--data", str(lmdb_128), "--genotype", "alphagan_church256", "--outdir", str(tmp_path / "run"),
        "--cfg", "tiny", "--device", "cpu"])
    assert result.exit_code != 0
    assert "256 px" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
