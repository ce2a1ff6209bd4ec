"""Figures: learning curves and per-state correlation maps (PNG + SVG, readable at a glance)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` and as SVG beside it; returns the PNG path."""
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
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
        ax.fill_between(
            t, -1.05, 1.05, where=corrupt[rows], color="tab:red", alpha=0.12, step="mid"
        )
        ax.plot(t, rho[:, i], color="tab:blue", label=r"$\rho_k(s)$")
        ax.plot(t, pi[:, i], color="tab:orange", label=r"$\pi_k(s)$")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(f"mixture {i + 1}" + (" (target)" if i == 0 else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8, ncols=2)
    ax = axes[-1]
    ax.fill_between(t, 0, 1, where=corrupt[rows], color="tab:red", alpha=0.12, step="mid")
    ax.plot(t, quality, color="black")
    ax.set(ylim=(-0.02, 1.02), ylabel="P(target | s, a)", xlabel="time step in the episode")
    ax.grid(alpha=0.3)
    fig.suptitle(
        f"correlations and mixture weights along demo episode {episode} (red: the adversary acted)"
    )
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ CLI
def add_arguments(parser: Any) -> None:
    sub = parser.add_subparsers(dest="plot_command", metavar="{correlations,curves}", required=True)
    corr = sub.add_parser("correlations", help="rho_k and pi_k along a demonstrated episode")
    corr.add_argument("--policy", required=True, help="policy folder (choicenet head)")
    corr.add_argument("--demos", required=True, help="DemoSet .h5 file")
    corr.add_argument("--episode", type=int, default=None, help="episode id (default: mixed)")
    corr.add_argument("--out", default="correlations.png", help="output PNG (+ SVG beside)")
    curves = sub.add_parser("curves", help="learning curves of train_bc runs")
    curves.add_argument("logs", nargs="+", help="log.csv files (label = parent folder)")
    curves.add_argument("--out", default="learning_curves.png", help="output PNG (+ SVG)")


def run(args: Any) -> int:
    if args.plot_command == "correlations":
        from choicebc.demoset import DemoSet
        from choicebc.policy import BCPolicy

        policy = BCPolicy.load(args.policy)
        path = plot_trajectory_correlations(
            policy, DemoSet.load(args.demos), args.out, episode=args.episode
        )
    else:
        path = plot_learning_curves({Path(p).parent.name: p for p in args.logs}, args.out)
    print(f"wrote {path} and {path.with_suffix('.svg')}")
    return 0
