"""matplotlib plots: the data on the axes, the axis labels and ranges, smoothing, the PNG files."""

import math

import numpy as np
import pytest
from PIL import Image

from stylenas.nn.layers import NORMAL_OPS, UP_OPS
from stylenas.plots import DPI, ema_smooth, plot_series, save_line_panels
from stylenas.search.run import plot_alphas


def lines_by_label(axes):
    return {line.get_label(): line for line in axes.get_lines()}


def test_ema_smooth_is_the_debiased_weighted_mean():
    values = [1.0, 3.0, float("nan"), 5.0, None, -2.0]
    weight = 0.5
    seen, expected = [], []
    for value in values:  # oracle: mean of the finite values so far with weights weight^(age)
        if value is not None and math.isfinite(value):
            seen.append(value)
        ages = range(len(seen) - 1, -1, -1)
        expected.append(sum(weight ** a * v for a, v in zip(ages, seen)) / sum(weight ** a for a in ages))
    np.testing.assert_allclose(ema_smooth(values, weight), expected, rtol=1e-12)
    assert ema_smooth([4.0, 7.0], 0.0) == [4.0, 7.0]
    assert math.isnan(ema_smooth([float("nan"), 1.0], 0.6)[0])
    with pytest.raises(ValueError, match="smoothing weight"):
        ema_smooth([1.0], 1.0)


def test_plot_series_puts_kimg_and_values_on_the_axes(tmp_path):
    records = [{"kimg": 0.5 * i, "loss_G": 2.0 / (i + 1), "loss_D": 1.0 + 0.1 * (-1) ** i} for i in range(8)]
    records[3]["loss_D"] = float("nan")  # skipped, not drawn as a gap at a wrong x
    records.append({"kimg": 4.0, "fid": 123.0})  # another key's record: not a point of the loss panels
    figure = plot_series(records, ["loss_G", "loss_D", "r1_penalty"], tmp_path / "losses.png")
    assert len(figure.axes) == 2  # r1_penalty has no value: no empty panel
    loss_g, loss_d = figure.axes
    assert loss_g.get_xlabel() == "kimg" and loss_g.get_ylabel() == "loss_G" and loss_d.get_ylabel() == "loss_D"
    raw, smooth = lines_by_label(loss_g)["loss_G (raw)"], lines_by_label(loss_g)["loss_G"]
    np.testing.assert_allclose(raw.get_xdata(), [0.5 * i for i in range(8)])
    np.testing.assert_allclose(raw.get_ydata(), [2.0 / (i + 1) for i in range(8)])
    np.testing.assert_allclose(smooth.get_ydata(), ema_smooth([2.0 / (i + 1) for i in range(8)], 0.6))
    assert raw.get_alpha() < 1 and (smooth.get_alpha() or 1.0) == 1.0  # raw faint under the smoothed line
    kept = [i for i in range(8) if i != 3]
    np.testing.assert_allclose(lines_by_label(loss_d)["loss_D (raw)"].get_xdata(), [0.5 * i for i in kept])
    # real tick values: the x ticks cover the kimg range instead of a normalised axis
    low, high = loss_g.get_xlim()
    assert low <= 0.0 and high >= 3.5 and loss_g.get_ylim()[1] >= 2.0
    image = Image.open(tmp_path / "losses.png")
    image.verify()
    width, height = figure.get_size_inches() * DPI
    assert Image.open(tmp_path / "losses.png").size == (round(width), round(height))


def test_plot_series_with_nothing_to_draw_writes_nothing(tmp_path):
    records = [{"kimg": 1.0, "loss_D": float("nan")}, {"kimg": 2.0, "loss_D": None}]
    assert plot_series(records, ["loss_D"], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_plot_series_other_x_key_and_a_single_point(tmp_path):
    figure = plot_series([{"step": 7, "d_loss": 0.25}], ["d_loss"], tmp_path / "one.png", x_key="step")
    (line,) = figure.axes[0].get_lines()
    assert figure.axes[0].get_xlabel() == "step" and line.get_marker() == "o"
    assert list(line.get_xdata()) == [7] and list(line.get_ydata()) == [0.25]


def test_alpha_plot_names_the_operations_on_a_unit_axis(tmp_path):
    history = [{"alpha_normal": [0.2, 0.5, 0.3], "alpha_up": [0.1, 0.1, 0.8], "beta_b8_conv1": [1 / 8] * 8},
               {"alpha_normal": [0.1, 0.7, 0.2], "alpha_up": [0.0, 0.2, 0.8], "beta_b8_conv1": [0.3] + [0.1] * 7}]
    figure = plot_alphas(history, tmp_path / "alphas.png")
    normal, up, latent = figure.axes
    assert [t.get_text() for t in normal.get_legend().get_texts()] == list(NORMAL_OPS)
    assert [t.get_text() for t in up.get_legend().get_texts()] == list(UP_OPS)
    assert [t.get_text() for t in latent.get_legend().get_texts()] == [f"W{i}" for i in range(1, 9)]
    for axes in figure.axes:
        assert axes.get_ylim() == (0.0, 1.0) and axes.get_ylabel() == "softmax weight"
        assert axes.get_xlabel() == "iteration"
    line = lines_by_label(normal)["conv_3x3"]
    assert list(line.get_xdata()) == [1, 2] and list(line.get_ydata()) == [0.5, 0.7]
    assert list(lines_by_label(latent)["W1"].get_ydata()) == [0.125, 0.3]
    assert Image.open(tmp_path / "alphas.png").format == "PNG"


def test_panels_with_the_same_labels_share_colours_and_one_legend(tmp_path):
    panels = [(f"layer {k}", {"a": [0.1, 0.9], "b": [0.9, 0.1]}) for k in range(3)]
    figure = save_line_panels(panels, tmp_path / "p.png", columns=2)
    assert [axes.get_legend() is not None for axes in figure.axes] == [True, False, False]
    colours = [[line.get_color() for line in axes.get_lines()] for axes in figure.axes]
    assert colours[0] == colours[1] == colours[2] and colours[0][0] != colours[0][1]
    assert Image.open(tmp_path / "p.png").size == (2 * 400, 2 * 280)  # 2 x 2 grid of 4 x 2.8 inch panels
    with pytest.raises(ValueError, match="nothing to plot"):
        save_line_panels([], tmp_path / "empty.png")


def test_dggan_fig3_candidates_actions_and_replays_on_labelled_axes(tmp_path):
    from stylenas.conventional.searchers.dggan_reports import plot_fig3

    def record(id, parent, action, fid_norm, ratio):
        return {"id": id, "parent": parent, "action": action, "fid_norm": fid_norm, "g_d_ratio": ratio}

    records = [record(0, None, None, 1.0, 1.0), record(1, 0, "a", 0.8, 2.0), record(2, 0, "b", 1.2, 0.5),
               record(3, 1, "a", 0.6, 4.0), record(4, 1, "b", 0.4, 2.0), record(5, 2, "a", None, 1.0)]
    simulation = {"K": {"1": {"best_fid_norm": 0.6, "reached": 1.0}, "2": {"best_fid_norm": 0.4, "reached": 1.0}},
                  "p": {"0.5": {"best_fid_norm": None, "reached": 0.0}, "1.0": {"best_fid_norm": 0.4, "reached": 1.0}}}
    figure = plot_fig3(records, 4, tmp_path / "fig3.png", simulation)
    scatter, actions, ratio, replay_k, replay_p = figure.axes
    # left: every scored candidate at (log2 G/D, normalised FID); the unscored one is not drawn
    np.testing.assert_allclose(scatter.collections[0].get_offsets(), [[0, 1], [1, 0.8], [-1, 1.2], [2, 0.6], [1, 0.4]])
    arrows = [(tuple(a.xyann), tuple(a.xy)) for a in scatter.texts]
    assert arrows == [((1.0, 0.8), (1.0, 0.4)), ((0.0, 1.0), (1.0, 0.8))]  # the best's route 0 -> 1 -> 4
    assert "log2" in scatter.get_xlabel() and "normalised FID" in scatter.get_ylabel()
    # middle: per action (by hand) a: children 0.8 / 1.0 and 0.6 / 0.8, both better; b: 1.2 / 1.0 and 0.4 / 0.8
    assert [t.get_text() for t in actions.get_xticklabels()] == ["a", "b"]
    np.testing.assert_allclose([bar.get_height() for bar in actions.patches], [1.0, 0.5])
    assert actions.get_ylim() == (0.0, 1.0) and "better than their parent" in actions.get_ylabel()
    np.testing.assert_allclose(ratio.get_lines()[0].get_ydata(), [0.775, 0.85])
    assert "child / parent" in ratio.get_ylabel()
    # right: the replays' best normalised FID over K and over p (a replay that never reached the end: no point)
    np.testing.assert_allclose(replay_k.get_lines()[0].get_xydata(), [[1, 0.6], [2, 0.4]])
    np.testing.assert_allclose(replay_p.get_lines()[0].get_xydata(), [[1.0, 0.4]])
    assert "K" in replay_k.get_xlabel() and "p" in replay_p.get_xlabel()
    assert Image.open(tmp_path / "fig3.png").size == (1500, 460)
    assert len(plot_fig3(records, 4, tmp_path / "two.png").axes) == 3  # no simulation: no replay panels
