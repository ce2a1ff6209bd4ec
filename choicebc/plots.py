"""Figures: learning curves and per-state correlation maps (PNG + SVG, readable at a glance)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

from choicebc.atomic import atomic_path


class _Pyplot:
    """Stands for ``matplotlib.pyplot`` until first used, then imports it (Agg backend: files,
    no window) and puts it in its place: ``choicebc plot --help`` does not wait for matplotlib."""

    def __getattr__(self, name: str) -> Any:
        import matplotlib

        if "matplotlib.pyplot" not in sys.modules:
            matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot

        globals()["plt"] = pyplot  # this module's functions now see pyplot itself
        return getattr(pyplot, name)


plt: Any = _Pyplot()


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` and as SVG beside it, each atomically; returns the PNG.

    Each file is written to a temporary name and renamed, so a reader never sees half a
    figure. The figure is closed (its axes stay inspectable).
    """
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    # no date and fixed element ids: the same figure gives the same bytes (committed figures
    # change only when their data do)
    with plt.rc_context({"svg.hashsalt": "choicebc"}):
        for target, fmt in ((path, "png"), (path.with_suffix(".svg"), "svg")):
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return path


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a ``train_bc`` ``log.csv`` as float arrays."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def plot_learning_curves(logs: dict[str, str | Path], path: str | Path) -> Path:
    """Validation loss and clean-action MSE against optimizer steps, one line per run.

    Args:
        logs: label -> ``log.csv`` written by ``train_bc``.
        path: output PNG (an SVG is written beside it).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, log_path in logs.items():
        log = read_log(log_path)
        if not log:
            continue
        axes[0].plot(log["step"], log["loss"], label=label)
        axes[1].plot(log["step"], log["val_clean_mse"], label=label)
    axes[0].set(title="training loss (each head's own objective)", xlabel="optimizer step")
    axes[0].set_ylabel("loss")
    axes[1].set(
        title="held-out MSE to the expert's actions",
        xlabel="optimizer step",
        ylabel="MSE (action units²)",
        yscale="log",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def step_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` of each run of consecutive True steps in ``mask (T,) bool``."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def shade_steps(ax: Any, mask: np.ndarray, label: str | None = None, **style: Any) -> list[Any]:
    """Shade time steps ``t`` where ``mask[t]`` over ``[t - 0.5, t + 0.5]``, full axis height.

    One span per run of consecutive steps, so a lone step gets its own band (``fill_between``
    with ``step="mid"`` draws nothing for a single True between Falses). Returns the patches;
    only the first carries ``label``.
    """
    patches = []
    for first, last in step_runs(mask):
        labelled = {"label": label} if label is not None and not patches else {}
        patches.append(ax.axvspan(first - 0.5, last + 0.5, **labelled, **style))
    return patches


def plot_trajectory_correlations(
    policy: Any, demos: Any, path: str | Path, episode: int | None = None, max_steps: int = 300
) -> Path:
    """ρ_k and π_k along one demonstrated trajectory, one panel per mixture.

    Steps where the ground truth says the adversary acted are shaded, so a reader can check
    that ρ_k and π_k of the mixture absorbing the corruption light up exactly there.

    Args:
        policy: a ``BCPolicy`` with a ChoiceNet head.
        demos: a ``DemoSet`` (flat ``observations``, ``actions``, ``is_corrupt``,
            ``episode_ids``).
        path: output PNG (an SVG is written beside it).
        episode: which episode (default: the first one with both kinds of step).
        max_steps: plot at most this many steps from the episode's start.
    """
    ids = np.asarray(demos.episode_ids)
    corrupt = np.asarray(demos.is_corrupt, dtype=bool)
    if episode is None:
        episode = ids[0]
        for e in np.unique(ids):
            c = corrupt[ids == e]
            if c.any() and not c.all():
                episode = e
                break
    rows = np.flatnonzero(ids == episode)[:max_steps]
    obs = np.asarray(demos.observations)[rows]
    actions = np.asarray(demos.actions)[rows]
    rho = policy.correlations(obs)
    pi = policy.mixture_weights(obs)
    quality = policy.data_quality(observations=obs, actions=actions)
    k = rho.shape[1]
    t = np.arange(len(rows))
    fig, axes = plt.subplots(k + 1, 1, figsize=(11, 1.9 * (k + 1)), sharex=True)
    for i, ax in enumerate(axes[:k]):
        shade_steps(ax, corrupt[rows], color="tab:red", alpha=0.12, lw=0)
        ax.plot(t, rho[:, i], color="tab:blue", label=r"$\rho_k(s)$")
        ax.plot(t, pi[:, i], color="tab:orange", label=r"$\pi_k(s)$")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(f"mixture {i + 1}" + (" (target)" if i == 0 else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8, ncols=2)
    ax = axes[-1]
    shade_steps(ax, corrupt[rows], color="tab:red", alpha=0.12, lw=0)
    ax.plot(t, quality, color="black")
    ax.set(ylim=(-0.02, 1.02), ylabel="P(target | s, a)", xlabel="time step in the episode")
    ax.grid(alpha=0.3)
    fig.suptitle(
        f"correlations and mixture weights along demo episode {episode} (red: the adversary acted)"
    )
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ correlation maps
RHO_CMAP = "RdBu"
"""Diverging map for rho in [-1, 1]: red = anti-correlated (a flipped demonstrator)."""
PI_CMAP = "viridis"
RHO_LABEL = r"$\rho_k$ (unitless, $-1 \ldots 1$)"
PI_LABEL = r"$\pi_k$ (probability, $0 \ldots 1$)"
LABEL_COLOURS = {"expert": "#1b9e77", "corrupt": "#d95f02", "rollout": "#7f7f7f"}


def _scatter(ax: Any, *args: Any, **kwargs: Any) -> Any:
    """``ax.scatter`` rasterised: thousands of points would make the SVG megabytes."""
    return ax.scatter(*args, rasterized=True, **kwargs)


def _is_point_reach(env_id: str | None) -> bool:
    return env_id is not None and "PointReach" in env_id


def _subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _policy_obs_stats(policy: Any) -> tuple[np.ndarray, np.ndarray]:
    """The policy's observation normalisation (mean, std) as numpy arrays."""
    return (
        np.asarray(policy.obs_mean, dtype=np.float64).reshape(-1),
        np.asarray(policy.obs_std, dtype=np.float64).reshape(-1),
    )


def _overlay_labels(ax: Any, xy: np.ndarray, corrupt: np.ndarray | None) -> None:
    """Demonstrated states as points: expert (green circles) and corrupt (orange crosses)."""
    if corrupt is None:
        _scatter(ax, xy[:, 0], xy[:, 1], s=6, c="k", alpha=0.5, lw=0, label="demonstrated state")
        return
    _scatter(
        ax, *xy[~corrupt].T, s=7, c=LABEL_COLOURS["expert"], ec="white", lw=0.2, label="expert step"
    )
    _scatter(
        ax,
        *xy[corrupt].T,
        s=12,
        c=LABEL_COLOURS["corrupt"],
        marker="x",
        lw=0.7,
        label="corrupt step",
    )


def plot_correlation_map(
    policy: Any,
    demos: Any = None,
    path: str | Path | None = None,
    *,
    dims: tuple[int, int] = (0, 1),
    extent: tuple[float, float, float, float] | None = None,
    resolution: int = 121,
    max_points: int = 800,
    seed: int = 0,
) -> Any:
    """Heatmaps of rho_k(s) and pi_k(s) over a plane of states, for every mixture k.

    Row 1 shows rho_k (diverging map fixed to [-1, 1]), row 2 pi_k (fixed to [0, 1]), one
    column per mixture; the demonstrated states are overlaid, coloured by their ground-truth
    label. On ``choicebc/PointReach-v0`` the observation *is* the position, so the plane is the
    whole state space (the square ``[-1, 1]^2``, goal marked). For other tasks the plane is
    spanned by observation dims ``dims`` and every other dim is fixed at the policy's training
    mean (``policy.obs_mean``); the title says so.

    Args:
        policy: a ``BCPolicy`` with a ChoiceNet head (``correlations``, ``mixture_weights``).
        demos: optional ``DemoSet`` to overlay (``observations``, ``is_corrupt``).
        path: if given, write the figure there as PNG + SVG.
        dims: the two observation dims spanning the plane.
        extent: ``(x_min, x_max, y_min, y_max)``; default ``[-1, 1]^2`` on PointReach, else the
            demos' 1-99 % range (or the training mean +- 3 std without demos), padded 5 %.
        resolution: grid points per axis.
        max_points: at most this many demonstrated states are drawn.
        seed: seed of the subsample of demonstrated states.

    Returns:
        The matplotlib ``Figure``; ``fig.axes[:2K]`` are the panels (rho row, then pi row), the
        last two axes the colour bars.

    Raises:
        ValueError: the policy's head has no correlations, or ``dims`` are out of range.
    """
    mean, std = _policy_obs_stats(policy)
    d0, d1 = dims
    if not (0 <= d0 < policy.obs_dim and 0 <= d1 < policy.obs_dim and d0 != d1):
        raise ValueError(f"dims must be two distinct observation dims < {policy.obs_dim}")
    env_id = getattr(policy, "env_id", None)
    point_reach = _is_point_reach(env_id) and policy.obs_dim == 2
    obs_demo = None if demos is None else np.asarray(demos.observations, dtype=np.float64)
    if extent is None:
        if point_reach:
            extent = (-1.0, 1.0, -1.0, 1.0)
        else:
            if obs_demo is not None:
                lo = np.percentile(obs_demo[:, [d0, d1]], 1, axis=0)
                hi = np.percentile(obs_demo[:, [d0, d1]], 99, axis=0)
            else:
                lo, hi = mean[[d0, d1]] - 3 * std[[d0, d1]], mean[[d0, d1]] + 3 * std[[d0, d1]]
            pad = 0.05 * np.maximum(hi - lo, 1e-6)
            extent = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    xs = np.linspace(extent[0], extent[1], resolution)
    ys = np.linspace(extent[2], extent[3], resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.tile(mean.astype(np.float32), (gx.size, 1))
    grid[:, d0], grid[:, d1] = gx.ravel(), gy.ravel()
    rho = policy.correlations(grid)
    pi = policy.mixture_weights(grid)
    k = rho.shape[1]

    fig, axes = plt.subplots(
        2,
        k,
        figsize=(2.9 * k + 1.2, 6.0),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    picks = None
    if obs_demo is not None:
        picks = _subsample(len(obs_demo), max_points, seed)
        labels = np.asarray(demos.is_corrupt, dtype=bool)[picks]
        if not getattr(demos, "has_labels", True):
            labels = None
    for row, (values, cmap, vmin, vmax, sym) in enumerate(
        ((rho, RHO_CMAP, -1.0, 1.0, r"\rho"), (pi, PI_CMAP, 0.0, 1.0, r"\pi"))
    ):
        for i in range(k):
            ax = axes[row, i]
            image = ax.imshow(
                values[:, i].reshape(gx.shape),
                origin="lower",
                extent=extent,
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                aspect="auto",
                interpolation="nearest",
            )
            note = " (target)" if i == 0 else ""
            ax.set_title(f"${sym}_{{{i + 1}}}(s)${note}", fontsize=10)
            if picks is not None:
                _overlay_labels(ax, obs_demo[picks][:, [d0, d1]], labels)
            if point_reach:
                from choicebc.envs import POINT_REACH

                ax.plot(
                    *POINT_REACH.goal, marker="*", ms=12, mec="k", mfc="gold", ls="", label="goal"
                )
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
        fig.colorbar(
            image, ax=axes[row, :], label=RHO_LABEL if row == 0 else PI_LABEL, shrink=0.9, pad=0.01
        )
    xlabel, ylabel = (
        ("x position (m)", "y position (m)")
        if point_reach
        else (f"observation[{d0}]", f"observation[{d1}]")
    )
    for ax in axes[1, :]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if picks is not None or point_reach:
        axes[0, 0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    name = env_id or "policy"
    if point_reach:
        plane = "over the plane of positions (the observation; velocity is not observed)"
    else:
        plane = f"over observation dims ({d0}, {d1}); the other dims fixed at the training mean"
    fig.suptitle(
        f"{name}: correlation of each mixture with the target, $\\rho_k(s)$ (top), and mixture "
        f"weight $\\pi_k(s)$ (bottom), {plane}",
        fontsize=11,
    )
    if path is not None:
        save_figure(fig, path)
    return fig


def rollout_observations(policy: Any, env_id: str, steps: int = 300, seed: int = 0) -> np.ndarray:
    """``(T, obs_dim) float32`` states the policy visits in one episode (``T <= steps``).

    The policy acts with its target mixture (``policy.act``) in the ``cpu`` batched simulator;
    the episode starts from seed ``seed`` and is cut after ``steps`` steps.
    """
    from choicebc.sim import make_batched

    env = make_batched(env_id, num_envs=1, backend="cpu", seed=seed)
    try:
        obs, _ = env.reset()
        visited = []
        for _ in range(steps):
            visited.append(obs[0].copy())
            obs, _, terminated, truncated, _ = env.step(policy.act(obs))
            if terminated[0] or truncated[0]:
                break
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()
    return np.asarray(visited, dtype=np.float32)


def _mixed_episode(demos: Any, episode: int | None) -> int:
    """``episode`` or the first episode with both expert and corrupt steps."""
    ids = np.asarray(demos.episode_ids)
    if episode is not None:
        if episode not in set(np.unique(ids).tolist()):
            raise ValueError(f"episode {episode} is not in the demos (0 .. {ids.max()})")
        return int(episode)
    corrupt = np.asarray(demos.is_corrupt, dtype=bool)
    for e in np.unique(ids):
        c = corrupt[ids == e]
        if c.any() and not c.all():
            return int(e)
    return int(ids[0])


def plot_rollout_correlations(
    policy: Any,
    demos: Any = None,
    path: str | Path | None = None,
    *,
    rollout_obs: np.ndarray | None = None,
    episode: int | None = None,
    max_steps: int = 300,
) -> Any:
    """rho_k and pi_k along a rolled-out and a demonstrated trajectory, one panel per mixture.

    Time is on the x-axis. Solid lines follow a demonstrated episode (its corrupt steps shaded),
    dotted lines the policy's own rollout; blue is rho_k, orange pi_k.

    Args:
        policy: a ChoiceNet ``BCPolicy``.
        demos: ``DemoSet`` to take the demonstrated episode from (optional).
        path: if given, write PNG + SVG.
        rollout_obs: ``(T, obs_dim)`` states of a rollout (see :func:`rollout_observations`).
        episode: demo episode (default: the first with both kinds of step).
        max_steps: at most this many steps of each trajectory.

    Returns:
        The ``Figure``; its first ``K`` axes are the mixture panels.

    Raises:
        ValueError: neither ``demos`` nor ``rollout_obs`` given, or no correlations.
    """
    if demos is None and rollout_obs is None:
        raise ValueError("give demos, rollout_obs or both")
    tracks = []
    corrupt_steps = None
    if demos is not None:
        e = _mixed_episode(demos, episode)
        rows = np.flatnonzero(np.asarray(demos.episode_ids) == e)[:max_steps]
        obs = np.asarray(demos.observations)[rows]
        tracks.append((f"demo episode {e}", "-", obs))
        corrupt_steps = np.asarray(demos.is_corrupt, dtype=bool)[rows]
    if rollout_obs is not None:
        tracks.append(("policy rollout", ":", np.asarray(rollout_obs)[:max_steps]))
    curves = [
        (name, ls, policy.correlations(o), policy.mixture_weights(o)) for name, ls, o in tracks
    ]
    k = curves[0][2].shape[1]
    fig, axes = plt.subplots(
        k, 1, figsize=(11, 1.8 * k + 0.8), sharex=True, squeeze=False, layout="constrained"
    )
    axes = axes[:, 0]
    for i, ax in enumerate(axes):
        if corrupt_steps is not None:
            label = "corrupt step (demo)" if i == 0 else None
            shade_steps(ax, corrupt_steps, label, color=LABEL_COLOURS["corrupt"], alpha=0.3, lw=0)
        for name, ls, rho, pi in curves:
            ax.plot(rho[:, i], ls=ls, color="tab:blue", lw=1.2, label=rf"$\rho_k$, {name}")
            ax.plot(pi[:, i], ls=ls, color="tab:orange", lw=1.2, label=rf"$\pi_k$, {name}")
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="k", lw=0.5, alpha=0.4)
        ax.set_ylabel(f"mixture {i + 1}" + (" (target)" if i == 0 else "") + "\n(unitless)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=7, ncols=3, framealpha=0.8)
    axes[-1].set_xlabel("time step in the trajectory")
    fig.suptitle(
        f"{getattr(policy, 'env_id', None) or 'policy'}: correlation $\\rho_k(s_t)$ "
        r"(in $[-1, 1]$) and weight $\pi_k(s_t)$ (in $[0, 1]$) along trajectories",
        fontsize=11,
    )
    if path is not None:
        save_figure(fig, path)
    return fig


def pca_2d(states: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``states (N, d)`` standardised by ``mean``/``std`` on their 2 principal axes.

    Returns:
        ``(N, 2)`` coordinates and ``(2,)`` explained-variance ratios (numpy SVD).
    """
    z = (np.asarray(states, dtype=np.float64) - mean) / np.maximum(std, 1e-6)
    z -= z.mean(0)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    var = s**2
    ratio = var[:2] / max(var.sum(), 1e-12)
    coords = z @ vt[:2].T
    if coords.shape[1] < 2:  # a 1-D state space: pad the second axis
        coords = np.column_stack([coords, np.zeros(len(coords))])
        ratio = np.append(ratio, 0.0)
    return coords, ratio


def plot_state_pca(
    policy: Any,
    demos: Any = None,
    path: str | Path | None = None,
    *,
    rollout_obs: np.ndarray | None = None,
    max_points: int = 4000,
    seed: int = 0,
) -> Any:
    """Visited states in 2-D (PCA), coloured by rho_2(s) and by their ground-truth label.

    States (demonstrated, and rolled out if given) are standardised with the policy's own
    normalisation before the PCA, so every dim counts as the policy sees it.

    Returns:
        The ``Figure``: axes 0 (by rho_2), 1 (by label), then the rho colour bar.

    Raises:
        ValueError: no states given, or a head with a single mixture.
    """
    parts, kinds = [], []
    if demos is not None:
        obs = np.asarray(demos.observations)
        picks = _subsample(len(obs), max_points, seed)
        parts.append(obs[picks])
        corrupt = np.asarray(demos.is_corrupt, dtype=bool)[picks]
        kinds.append(np.where(corrupt, "corrupt", "expert"))
    if rollout_obs is not None and len(rollout_obs):
        parts.append(np.asarray(rollout_obs))
        kinds.append(np.full(len(rollout_obs), "rollout"))
    if not parts:
        raise ValueError("give demos, rollout_obs or both")
    states = np.concatenate(parts).astype(np.float32)
    kind = np.concatenate(kinds)
    rho = policy.correlations(states)
    if rho.shape[1] < 2:
        raise ValueError("the head has a single mixture: there is no rho_2 to show")
    mean, std = _policy_obs_stats(policy)
    xy, ratio = pca_2d(states, mean, std)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True, sharey=True, layout="constrained")
    image = _scatter(axes[0], *xy.T, c=rho[:, 1], cmap=RHO_CMAP, vmin=-1, vmax=1, s=6, lw=0)
    fig.colorbar(image, ax=axes[0], label=r"$\rho_2(s)$ (unitless, $-1 \ldots 1$)")
    axes[0].set_title(r"coloured by $\rho_2(s)$, the second mixture's correlation")
    names = {
        "expert": "expert step (demo)",
        "corrupt": "corrupt step (demo)",
        "rollout": "policy rollout",
    }
    for name in ("expert", "corrupt", "rollout"):
        sel = kind == name
        if sel.any():
            _scatter(
                axes[1], *xy[sel].T, s=6, lw=0, c=LABEL_COLOURS[name], label=names[name], alpha=0.8
            )
    axes[1].set_title("coloured by ground-truth label")
    axes[1].legend(loc="best", fontsize=8, markerscale=2)
    for ax in axes:
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance, standardised obs)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
    fig.suptitle(
        f"{getattr(policy, 'env_id', None) or 'policy'}: visited states, 2-D PCA", fontsize=11
    )
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_regression_view(
    regressor: Any,
    X: np.ndarray,
    y: np.ndarray,
    is_corrupt: np.ndarray | None = None,
    path: str | Path | None = None,
    *,
    x_true: np.ndarray | None = None,
    y_true: np.ndarray | None = None,
    resolution: int = 400,
) -> Any:
    """The paper's Figure 4 regression view for a fitted 1-D ``ChoiceNetRegressor``.

    Panel 1: the data (coloured by ground-truth label if given, else by ``data_quality``), the
    target-mixture fit mu_1(x) and optionally the true function; panel 2: rho_k(x) for every
    mixture (Figure 4(b)/(d)); panel 3: pi_k(x).

    Args:
        regressor: fitted ``ChoiceNetRegressor`` on 1-D inputs and 1-D targets.
        X: ``(n, 1)`` or ``(n,)`` inputs; y: ``(n,)`` targets.
        is_corrupt: ``(n,) bool`` ground truth (optional).
        path: if given, write PNG + SVG.
        x_true, y_true: the clean target function, drawn dashed (optional).
        resolution: points of the curves.

    Returns:
        The ``Figure``: axes 0 (data + fit), 1 (rho), 2 (pi) [, colour bar].

    Raises:
        ValueError: inputs or targets are not 1-D.
    """
    X = np.asarray(X, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
    if X.shape[1] != 1 or y.shape[1] != 1:
        raise ValueError("the regression view needs 1-D inputs and 1-D targets")
    grid = np.linspace(X.min(), X.max(), resolution)[:, None]
    fit = np.asarray(regressor.predict(grid)).reshape(-1)
    rho = regressor.correlations(grid)
    pi = regressor.mixture_weights(grid)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4), layout="constrained")
    ax = axes[0]
    if is_corrupt is not None:
        c = np.asarray(is_corrupt, dtype=bool)
        _scatter(ax, X[~c, 0], y[~c, 0], s=6, c=LABEL_COLOURS["expert"], lw=0, label="clean")
        _scatter(
            ax,
            X[c, 0],
            y[c, 0],
            s=8,
            c=LABEL_COLOURS["corrupt"],
            marker="x",
            lw=0.6,
            label="corrupt",
        )
    else:
        q = regressor.data_quality(X, y[:, 0])
        image = _scatter(ax, X[:, 0], y[:, 0], s=6, c=q, cmap=PI_CMAP, vmin=0, vmax=1, lw=0)
        fig.colorbar(image, ax=ax, label="P(target | x, y) (0 … 1)")
    if x_true is not None and y_true is not None:
        ax.plot(x_true, y_true, "k--", lw=1, label="true function")
    ax.plot(grid[:, 0], fit, color="tab:blue", lw=2, label=r"fit: target mixture $\mu_1(x)$")
    ax.set(title="data and the target-mixture fit", xlabel="x", ylabel="y")
    ax.legend(fontsize=8)
    for i in range(rho.shape[1]):
        axes[1].plot(grid[:, 0], rho[:, i], lw=1.5, label=rf"$\rho_{{{i + 1}}}(x)$")
        axes[2].plot(grid[:, 0], pi[:, i], lw=1.5, label=rf"$\pi_{{{i + 1}}}(x)$")
    axes[1].set(
        title="correlation of each mixture with the target",
        xlabel="x",
        ylabel=r"$\rho_k(x)$ (unitless)",
        ylim=(-1.05, 1.05),
    )
    axes[2].set(
        title="mixture weights", xlabel="x", ylabel=r"$\pi_k(x)$ (probability)", ylim=(-0.02, 1.02)
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle("ChoiceNet regression view (paper Figure 4(b)(d))", fontsize=11)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_policy_correlations(
    policy: Any,
    demos: Any = None,
    path: str | Path = "correlations.png",
    *,
    episode: int | None = None,
    steps: int = 300,
    seed: int = 0,
    dpi: int = 120,
) -> list[Path]:
    """The correlation view that fits the policy's task; returns the PNGs written (+ SVGs).

    2-D tasks (``obs_dim == 2``, e.g. PointReach): :func:`plot_correlation_map` at ``path``.
    Otherwise (locomotion): :func:`plot_rollout_correlations` at ``path`` and
    :func:`plot_state_pca` at ``<path stem>_pca.png``, both with one rollout of ``steps``
    steps from seed ``seed`` (when the policy records its env id) and the demos if given.
    """
    path = Path(path).with_suffix(".png")
    if policy.obs_dim == 2:
        return [save_figure(plot_correlation_map(policy, demos), path, dpi=dpi)]
    rollout = None
    if getattr(policy, "env_id", None) is not None:
        rollout = rollout_observations(policy, policy.env_id, steps=steps, seed=seed)
    elif demos is None:
        raise ValueError("the policy records no env id: pass --demos to plot its trajectories")
    pca_path = path.with_name(f"{path.stem}_pca.png")
    fig = plot_rollout_correlations(
        policy, demos, rollout_obs=rollout, episode=episode, max_steps=steps
    )
    save_figure(fig, path, dpi=dpi)
    save_figure(plot_state_pca(policy, demos, rollout_obs=rollout, seed=seed), pca_path, dpi=dpi)
    return [path, pca_path]


# ------------------------------------------------------------------------------ CLI
def add_arguments(parser: Any) -> None:
    sub = parser.add_subparsers(dest="plot_command", metavar="{correlations,curves}", required=True)
    corr = sub.add_parser(
        "correlations",
        help="rho_k and pi_k maps (2-D task) or along trajectories + PCA (locomotion)",
    )
    corr.add_argument("--policy", required=True, help="policy folder (choicenet head)")
    corr.add_argument("--demos", default=None, help="DemoSet .h5 file to overlay (optional)")
    corr.add_argument("--episode", type=int, default=None, help="demo episode (default: mixed)")
    corr.add_argument("--steps", type=int, default=300, help="steps of trajectory to show")
    corr.add_argument("--seed", type=int, default=0, help="seed of the rollout episode")
    corr.add_argument("--out", default="correlations.png", help="output PNG (+ SVG beside)")
    corr.add_argument("--dpi", type=int, default=120, help="PNG resolution (dots per inch)")
    curves = sub.add_parser("curves", help="learning curves of train_bc runs")
    curves.add_argument("logs", nargs="+", help="log.csv files (label = parent folder)")
    curves.add_argument("--out", default="learning_curves.png", help="output PNG (+ SVG)")


def run(args: Any) -> int:
    import sys

    from choicebc.demoset import check_output_path

    try:  # before the work: a figure that cannot be saved is found out at once
        check_output_path(Path(args.out).with_suffix(".png"), overwrite=True, create_folder=True)
    except OSError as exc:
        print(f"choicebc plot {args.plot_command}: {exc}", file=sys.stderr)
        return 2
    if args.plot_command == "correlations":
        from choicebc.bcnd import BCNDPolicy
        from choicebc.demoset import DemoSet
        from choicebc.policy import BCPolicy

        try:
            if BCNDPolicy.is_bcnd_folder(args.policy):
                raise ValueError(
                    f"{args.policy} is a BCND ensemble: it has no correlations rho_k; plot a "
                    "ChoiceNet policy (choicebc train --head choicenet)"
                )
            policy = BCPolicy.load(args.policy)
            demos = DemoSet.load(args.demos) if args.demos else None
            if demos is not None and demos.obs_dim != policy.obs_dim:
                raise ValueError(
                    f"the demos have obs_dim={demos.obs_dim}, the policy {policy.obs_dim}: "
                    "pass demos of the task the policy was trained on"
                )
            paths = plot_policy_correlations(
                policy,
                demos,
                args.out,
                episode=args.episode,
                steps=args.steps,
                seed=args.seed,
                dpi=args.dpi,
            )
        except (ValueError, OSError) as exc:  # PolicyLoadError, DemoFileError, no rho
            print(f"choicebc plot correlations: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            for log in args.logs:
                if not Path(log).is_file():
                    raise FileNotFoundError(
                        f"no log file at {log}: pass the log.csv of `choicebc train` run folders"
                    )
            paths = [plot_learning_curves({Path(p).parent.name: p for p in args.logs}, args.out)]
        except (ValueError, OSError) as exc:  # a missing or malformed log.csv
            print(f"choicebc plot curves: {exc}", file=sys.stderr)
            return 2
    for path in paths:
        print(f"wrote {path} and {path.with_suffix('.svg')}")
    return 0
