"""Correlation maps, trajectory/PCA views and the regression view: axes, labels, value ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from choicebc.envs import POINT_REACH_ID, PointReachExpert

import choicebc as cb
from choicebc.cli import main
from choicebc.plots import (
    pca_2d,
    plot_correlation_map,
    plot_regression_view,
    plot_rollout_correlations,
    plot_state_pca,
    rollout_observations,
    shade_steps,
    step_runs,
)

TINY = cb.TrainConfig(hidden=(32, 32), batch_size=128, log_every=10**6)


@pytest.fixture(scope="module")
def trained():
    """A tiny ChoiceNet-BC policy on PointReach demos with 30 % flipped steps."""
    torch.set_num_threads(1)
    demos = cb.collect(
        POINT_REACH_ID,
        PointReachExpert(),
        "flipped",
        ratio=0.3,
        episodes=12,
        seed=0,
        progress=False,
    )
    # K = 3 keeps the figures small (rendering dominates these tests)
    policy = cb.train_bc(
        demos,
        head="choicenet",
        steps=300,
        seed=0,
        progress=False,
        config=TINY,
        head_kwargs={"n_mixtures": 3},
    )
    return policy, demos


def images_of(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_map_has_rho_and_pi_panels_with_fixed_ranges(trained):
    policy, demos = trained
    fig = plot_correlation_map(policy, demos, resolution=41)
    k = policy.correlations(demos.observations[:1]).shape[1]
    assert k == 3
    images = images_of(fig)
    assert len(images) == 2 * k
    rho, pi = images[:k], images[k:]
    for im in rho:
        assert im.get_clim() == (-1.0, 1.0) and im.get_cmap().name == "RdBu"
        assert np.all(np.abs(im.get_array()) <= 1.0)
    np.testing.assert_allclose(rho[0].get_array(), 1.0)  # the target mixture: rho_1 == 1
    for im in pi:
        assert im.get_clim() == (0.0, 1.0)
    np.testing.assert_allclose(sum(im.get_array() for im in pi), 1.0, atol=1e-5)
    assert rho[0].get_extent() == [-1.0, 1.0, -1.0, 1.0]
    panels = fig.axes[: 2 * k]
    assert panels[k].get_xlabel() == "x position (m)" and panels[0].get_ylabel() == "y position (m)"
    assert panels[0].get_title().startswith(r"$\rho_{1}(s)$") and "target" in panels[0].get_title()
    bars = [ax.get_ylabel() for ax in fig.axes[2 * k :]]
    assert any("rho" in b and "-1" in b for b in bars) and any("pi" in b and "0" in b for b in bars)
    assert "PointReach" in fig._suptitle.get_text() and "position" in fig._suptitle.get_text()
    # demonstrated states overlaid, split by label
    legend = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert {"expert step", "corrupt step", "goal"} <= set(legend)


def test_map_of_a_head_without_correlations_is_refused(trained):
    _, demos = trained
    mse = cb.train_bc(demos, head="mse", steps=2, seed=0, progress=False, config=TINY)
    with pytest.raises(ValueError, match="no correlations"):
        plot_correlation_map(mse, demos)
    with pytest.raises(ValueError, match="distinct"):
        plot_correlation_map(trained[0], dims=(0, 0))


def test_trajectory_panels_and_pca(trained, tmp_path):
    policy, demos = trained
    rollout = rollout_observations(policy, POINT_REACH_ID, steps=40, seed=3)
    assert rollout.ndim == 2 and rollout.shape[1] == 2 and 1 <= len(rollout) <= 40
    fig = plot_rollout_correlations(policy, demos, rollout_obs=rollout)
    k = policy.correlations(rollout[:1]).shape[1]
    panels = fig.axes[:k]
    assert len(fig.axes) == k and panels[-1].get_xlabel() == "time step in the trajectory"
    for ax in panels:
        assert ax.get_ylim() == (-1.05, 1.05)
        for line in ax.get_lines():
            assert np.all(np.abs(line.get_ydata()) <= 1.0 + 1e-6)
    labels = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert any("policy rollout" in t for t in labels) and any("demo episode" in t for t in labels)

    fig = plot_state_pca(policy, demos, tmp_path / "pca.png", rollout_obs=rollout)
    by_rho = fig.axes[0].collections[0]
    assert by_rho.get_clim() == (-1.0, 1.0)
    values = by_rho.get_array()
    assert len(values) == len(demos) + len(rollout) and np.all(np.abs(values) <= 1.0)
    assert fig.axes[0].get_xlabel().startswith("PC 1 (")
    legend = {t.get_text() for t in fig.axes[1].get_legend().get_texts()}
    assert legend == {"expert step (demo)", "corrupt step (demo)", "policy rollout"}
    assert (tmp_path / "pca.svg").is_file()


def shaded_intervals(ax) -> list[tuple[float, float]]:
    """(x0, x1) of the full-height spans drawn on ``ax``, in step units."""
    spans = []
    for patch in ax.patches:
        box = patch.get_bbox()
        spans.append((round(box.x0, 6), round(box.x1, 6)))
    return sorted(spans)


def test_every_corrupt_step_is_shaded_even_a_lone_one():
    import matplotlib.pyplot as plt

    mask = np.array([0, 1, 0, 0, 1, 1, 0, 1], dtype=bool)
    assert step_runs(mask) == [(1, 1), (4, 5), (7, 7)]
    assert step_runs(np.zeros(3, bool)) == [] and step_runs(np.ones(2, bool)) == [(0, 1)]
    fig, ax = plt.subplots()
    patches = shade_steps(ax, mask, label="corrupt", color="red")
    assert shaded_intervals(ax) == [(0.5, 1.5), (3.5, 5.5), (6.5, 7.5)]
    assert len(patches) == 3
    assert ax.get_legend_handles_labels()[1] == ["corrupt"]  # one legend entry
    plt.close(fig)


def test_rollout_plot_shades_each_corrupt_step_of_the_demo(trained):
    policy, demos = trained
    fig = plot_rollout_correlations(policy, demos, episode=None, max_steps=60)
    ids = np.asarray(demos.episode_ids)
    corrupt = np.asarray(demos.is_corrupt, dtype=bool)
    episode = int(fig.axes[0].get_lines()[0].get_label().split("demo episode ")[1])
    steps = corrupt[ids == episode][:60]
    lone = [a for a, b in step_runs(steps) if a == b]
    assert lone, "the fixture's episode has no lone corrupt step to check"
    for ax in fig.axes:
        spans = shaded_intervals(ax)
        assert sum(x1 - x0 for x0, x1 in spans) == steps.sum()  # one unit per corrupt step
        for t in lone:
            assert (t - 0.5, t + 0.5) in spans


def test_pca_finds_the_dominant_axis():
    t = np.linspace(-1, 1, 200)
    states = np.stack([t, 2 * t, np.zeros_like(t)], 1) + 1e-3 * np.random.default_rng(0).normal(
        size=(200, 3)
    )
    xy, ratio = pca_2d(states, np.zeros(3), np.ones(3))
    assert xy.shape == (200, 2) and ratio[0] > 0.99
    # the first coordinate is the position along the line (up to sign)
    assert abs(np.corrcoef(xy[:, 0], t)[0, 1]) > 0.999


def test_regression_view_axes_and_ranges():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, 300)
    y = np.sin(x)
    corrupt = (x > 0) & (rng.random(300) < 0.5)
    y[corrupt] *= -1
    reg = cb.ChoiceNetRegressor(
        n_mixtures=2, steps=200, hidden_sizes=(16, 16), seed=0, progress=False
    ).fit(x[:, None], y)
    fig = plot_regression_view(reg, x, y, corrupt)
    data, rho_ax, pi_ax = fig.axes[:3]
    assert data.get_xlabel() == "x" and "fit" in data.get_legend().get_texts()[-1].get_text()
    assert rho_ax.get_ylim() == (-1.05, 1.05) and pi_ax.get_ylim() == (-0.02, 1.02)
    rho_lines = rho_ax.get_lines()
    assert len(rho_lines) == 2
    np.testing.assert_allclose(rho_lines[0].get_ydata(), 1.0)
    assert np.all(np.abs(rho_lines[1].get_ydata()) <= 1.0)
    pi_sum = sum(line.get_ydata() for line in pi_ax.get_lines())
    np.testing.assert_allclose(pi_sum, 1.0, atol=1e-6)
    # without labels the data are coloured by data_quality, with a colour bar in [0, 1]
    fig = plot_regression_view(reg, x, y)
    assert fig.axes[0].collections[0].get_clim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="1-D"):
        plot_regression_view(reg, np.zeros((3, 2)), np.zeros(3))


def test_cli_picks_the_map_for_a_2d_task(trained, tmp_path, capsys):
    policy, demos = trained
    policy.save(tmp_path / "policy")
    demos.save(tmp_path / "d.h5")
    out = tmp_path / "figs" / "corr.png"
    args = ["plot", "correlations", "--policy", str(tmp_path / "policy"), "--out", str(out)]
    assert main([*args, "--demos", str(tmp_path / "d.h5")]) == 0
    assert out.is_file() and out.with_suffix(".svg").is_file()
    assert not list(out.parent.glob(".*tmp"))  # atomic writes leave no temporaries
    assert "wrote" in capsys.readouterr().out
    assert main(["plot", "correlations", "--policy", str(tmp_path / "none")]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_cli_checks_the_out_path_before_plotting(trained, tmp_path, read_only_folder, capsys):
    policy, _ = trained
    policy.save(tmp_path / "policy")
    out = read_only_folder / "corr.png"
    args = ["plot", "correlations", "--policy", str(tmp_path / "policy"), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}: cannot write to folder" in err and err.count("\n") == 1
    assert main(["plot", "curves", str(tmp_path / "log.csv"), "--out", str(out)]) == 2
    assert f"cannot write {out}" in capsys.readouterr().err
    assert main(["plot", "curves", str(tmp_path / "log.csv"), "--out", str(tmp_path / "c")]) == 2
    assert f"no log file at {tmp_path / 'log.csv'}" in capsys.readouterr().err
