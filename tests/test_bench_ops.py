"""The ops benchmark's before/after rows of the 1x1 fast path (stylenas/ops/bench.py)."""
import pytest
import torch

from stylenas.nn import layers
from stylenas.ops import bench, conv2d_resample, setup_filter


def test_before_path_is_the_old_skip_with_the_same_result():
    torch.manual_seed(0)
    x, w, f = torch.randn([2, 4, 8, 8]), torch.randn([6, 4, 1, 1]), setup_filter([1, 3, 3, 1])
    before = bench._conv2d_resample_before(x, w, f, down=2)
    assert torch.allclose(before, conv2d_resample(x, w, f, down=2), atol=1e-5)
    w3 = torch.randn([6, 4, 3, 3])  # anything but a 1x1 down-sampling is passed through
    assert torch.equal(bench._conv2d_resample_before(x, w3, f, down=2, padding=1),
                       conv2d_resample(x, w3, f, down=2, padding=1))


@pytest.mark.slow
def test_fast_path_rows_time_both_paths_of_the_same_computation():
    rows = bench.run_fast_paths(torch.device("cpu"), quick=True, repeats=1)
    assert [row["case"].split()[0] for row in rows] == ["conv2d_resample", "Discriminator"]
    for row in rows:
        assert row["before_ms"] > 0 and row["after_ms"] > 0
        assert row["speedup"] == pytest.approx(row["before_ms"] / row["after_ms"])
        assert row["max_rel_error"] < 1e-4  # same numbers, other order
    assert layers.conv2d_resample is conv2d_resample  # the old path was only lent to the layers
