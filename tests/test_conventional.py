"""Conventional genotypes and networks: published architectures, parameter counts, files."""
import json

import pytest
import torch

from stylenas.conventional import (ConventionalGenotype, autogan_code, autogan_from_code, build_networks,
                                   count_parameters, load_genotype)
from stylenas.search.genotype import GenotypeError

# Parameters of G at gf 256 (latent 128) in the authors' public code: AutoGAN's
# models/autogan_cifar10_{a,b,c}.py and alphaGAN's Network_gen_Auto on models/genotypes.py.
# alphaGAN Table 2: (l) 8.618M / 9.279M, (s) 2.953M / 3.613M on CIFAR-10 / STL-10 (48 px).
G_PARAMS = {
    "autogan_a": {32: 4_405_251, 48: 5_065_731},
    "autogan_b": {32: 4_471_043, 48: 5_131_523},
    "autogan_c": {32: 4_406_275, 48: 5_066_755},
    "alphagan_l": {32: 8_618_499, 48: 9_278_979},
    "alphagan_s": {32: 2_952_707, 48: 3_613_187},
}
D_PARAMS = 1_053_824  # AutoGAN's SN discriminator at df 128
# alphaGAN paper Table 2, "Params (M)" of G, as printed (CIFAR-10 32 px / STL-10 48 px)
TABLE2_MILLIONS = {"alphagan_l": {32: 8.618, 48: 9.279}, "alphagan_s": {32: 2.953, 48: 3.613}}


@pytest.mark.parametrize("name", sorted(G_PARAMS))
def test_published_parameter_counts(name):
    for resolution, expected in G_PARAMS[name].items():
        G, D = build_networks(name, resolution=resolution, init=False)
        assert count_parameters(G) == expected
        assert count_parameters(D) == D_PARAMS
        if name in TABLE2_MILLIONS:  # the networks built here, against the paper's table
            assert round(count_parameters(G) / 1e6, 3) == TABLE2_MILLIONS[name][resolution]


@pytest.mark.parametrize("name", sorted(G_PARAMS))
def test_generator_output_and_backward(name):
    torch.manual_seed(0)
    G, D = build_networks(name, resolution=16, gf_dim=8, df_dim=8, latent_dim=16)
    x = G(torch.randn(3, 16))
    assert x.shape == (3, 3, 16, 16) and x.abs().max() <= 1
    D(x).mean().backward()
    assert all(p.grad is not None for p in G.parameters())


def test_autogan_code_round_trip():
    a = load_genotype("autogan_a")
    assert autogan_code(a) == [1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3]
    assert a.body["cells"][2] == {"conv": "pre", "norm": "none", "up": "nearest", "shortcut": False, "skip_in": [1, 2]}
    code = [0, 2, 2, 0, 1, 1, 0, 1, 0, 0, 0, 2, 1, 1]  # post + IN + deconv, a skip from cell 2 only
    g = autogan_from_code(code, resolution=16)
    assert autogan_code(g) == code and g.body["cells"][2]["skip_in"] == [2]
    G, _ = build_networks(g, resolution=16, gf_dim=8, df_dim=8, latent_dim=4)
    assert G(torch.randn(2, 4)).shape == (2, 3, 16, 16)
    with pytest.raises(GenotypeError, match="14 integers"):
        autogan_from_code([1, 0])
    with pytest.raises(GenotypeError, match="out of range"):
        autogan_from_code([1, 0, 5, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3])


def test_genotype_file_round_trip_and_errors(tmp_path):
    g = load_genotype("alphagan_s")
    g.save(tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["format"] == "stylenas-genotype" and data["search_space"] == "alphagan_conv"
    assert load_genotype(tmp_path / "g.json").body == g.body
    data["cells"][1]["normal"][0] = "conv_9x9"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match="conv_9x9"):
        load_genotype(tmp_path / "bad.json")
    data["search_space"] = "stylegan2"
    (tmp_path / "sg.json").write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match="not a conventional one"):
        load_genotype(tmp_path / "sg.json")
    with pytest.raises(GenotypeError, match="published genotype"):
        load_genotype("autogan_z")
    with pytest.raises(GenotypeError, match="multiple of 8"):
        ConventionalGenotype("alphagan_conv", 20, g.body).validate()


@pytest.mark.slow
def test_bench_cpu_tiny_reports_every_part():
    from stylenas.conventional.bench import run

    threads = torch.get_num_threads()
    try:
        result = run("cpu", "tiny", repeats=1, threads=1, log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    parts = result["alphagan_search"][0]
    assert all(parts[k] > 0 for k in ("seconds_per_weight_step", "seconds_per_test_weight_step",
                                      "seconds_per_arch_step"))
    assert result["degas_search"][0]["seconds_per_step"] > 0
    assert [r["genotype"] for r in result["retrain"]] == ["alphagan_s", "autogan_a"]
