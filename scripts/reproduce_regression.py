"""Reproduce ChoiceNet's regression results with ``choicebc`` (Choi et al., CVPR 2020).

Experiments (each prints a markdown table and writes it, a JSON file and PNGs to ``--out``):

* ``synthetic`` -- Section 4.1 / Figure 6: targets *cosexp*, *linear*, *step*, 1,000 points with
  x ~ U[-3, 3] and noise std 0.1, a share of outputs replaced by U[-1.5, 2.5] outliers;
  ChoiceNet vs MDN vs L2-MLP vs Tukey robust loss (5 mixtures, 3x64 ReLU). Metric: mean absolute
  error of the prediction against the true function on a 1,000-point grid.
* ``flipped`` -- Figure 4(a)(b): 50 % of the outputs with x in [0, 2] replaced by -y (K = 2);
  reports rho_2 over x in [0, 2] where |f(x)| > 0.2.
* ``boston`` -- Table 1: Boston housing, 80/20 split per seed, a share of the training targets
  replaced by U[min, max] of the training targets; test RMSE (clean test targets).
* ``ablation`` -- the identifiability mechanism: each change to the default configuration
  switched off in turn, on the flipped example, Boston 20/40 % and cosexp 60/80 %.

The paper gives the target functions only as plots; the formulas here (cos(pi x / 2) exp(-x^2/4),
x / 2, a -1/+1/-1 step at x = -1, 1) and the noise std 0.1 follow the authors' released code.

Usage: ``python scripts/reproduce_regression.py all --seeds 3`` (about 30 min on 1 core).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from choicebc.regressor import ChoiceNetRegressor, HeadRegressor

DATA_DIR = Path(__file__).resolve().parent / "data"
OUTLIER_RATES = (0.0, 0.2, 0.4, 0.6, 0.8)
BOSTON_RATES = (0.0, 0.2, 0.4)
PAPER_BOSTON = {  # Table 1 of the paper: RMSE at 0 / 20 / 40 % outliers
    "choicenet": (3.29, 4.77, 6.80),
    "l2": (3.22, 7.51, 9.88),
    "l1": (3.26, 7.16, 9.69),
    "robust": (4.28, 8.08, 10.94),
    "mdn": (3.46, 8.62, 10.44),
}


# -- data ------------------------------------------------------------------------------------
def cosexp(x: np.ndarray) -> np.ndarray:
    return np.cos(np.pi / 2 * x) * np.exp(-((x / 2) ** 2))


def linear(x: np.ndarray) -> np.ndarray:
    return 0.5 * x


def step(x: np.ndarray) -> np.ndarray:
    return np.where((x >= -1) & (x < 1), 1.0, -1.0)


TARGETS = {"cosexp": cosexp, "linear": linear, "step": step}


def synthetic_data(
    target: str, outlier_rate: float, seed: int, n: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x (n, 1)``, noisy targets ``y (n,)`` with outliers, and ``is_outlier (n,)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n, 1))
    y = TARGETS[target](x[:, 0]) + 0.1 * rng.normal(size=n)
    is_outlier = np.zeros(n, dtype=bool)
    is_outlier[rng.permutation(n)[: int(n * outlier_rate)]] = True
    y[is_outlier] = rng.uniform(-1.5, 2.5, size=is_outlier.sum())
    return x, y, is_outlier


def flipped_data(seed: int, n: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Figure 4(a): cosexp with 50 % of the outputs in x in [0, 2] replaced by their negation."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n, 1))
    y = cosexp(x[:, 0]) + 0.1 * rng.normal(size=n)
    flipped = (x[:, 0] >= 0) & (x[:, 0] <= 2) & (rng.random(n) < 0.5)
    y[flipped] = -y[flipped]
    return x, y, flipped


def load_boston() -> tuple[np.ndarray, np.ndarray]:
    """506 x 13 features and the median value (k$) target; see ``scripts/data/README.md``."""
    table = np.loadtxt(DATA_DIR / "boston_house_prices.csv", delimiter=",", skiprows=2)
    return table[:, :13], table[:, 13]


def boston_split(outlier_rate: float, seed: int) -> tuple[np.ndarray, ...]:
    """80/20 split; ``outlier_rate`` of the training targets replaced by U[min, max]."""
    X, y = load_boston()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    n_train = int(0.8 * len(X))
    train, test = perm[:n_train], perm[n_train:]
    y_train = y[train].copy()
    k = int(outlier_rate * n_train)
    y_train[rng.permutation(n_train)[:k]] = rng.uniform(y_train.min(), y_train.max(), size=k)
    return X[train], y_train, X[test], y[test]


# -- methods ---------------------------------------------------------------------------------
def make_method(name: str, seed: int, **common: Any) -> HeadRegressor:
    """The compared regressors: same backbone and training loop, different head."""
    common = {"seed": seed, "progress": False, **common}
    n_mixtures = common.pop("n_mixtures", 5)
    choicenet_kwargs = common.pop("choicenet_kwargs", {})
    if name == "choicenet":
        return ChoiceNetRegressor(n_mixtures=n_mixtures, **choicenet_kwargs, **common)
    if name == "mdn":
        return HeadRegressor(head="mdn", head_kwargs={"n_mixtures": n_mixtures}, **common)
    head = {"l2": "mse", "l1": "l1", "robust": "robust"}[name]
    return HeadRegressor(head=head, **common)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def fmt(values: list[float], digits: int = 3) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


# -- experiments -----------------------------------------------------------------------------
def run_synthetic(args: argparse.Namespace) -> dict:
    methods = ["choicenet", "mdn", "l2", "robust"]
    grid = np.linspace(-3, 3, 1000)[:, None]
    maes: dict[str, dict[str, dict[float, list[float]]]] = {}
    fits: dict[str, dict[str, np.ndarray]] = {}
    for target in args.targets:
        maes[target] = {m: {r: [] for r in OUTLIER_RATES} for m in methods}
        truth = TARGETS[target](grid[:, 0])
        for rate in OUTLIER_RATES:
            for seed in range(args.seeds):
                x, y, _ = synthetic_data(target, rate, seed)
                for m in methods:
                    reg = make_method(m, seed, steps=args.steps).fit(x, y)
                    pred = reg.predict(grid)
                    maes[target][m][rate].append(float(np.abs(pred - truth).mean()))
                    if rate == 0.6 and seed == 0:
                        fits.setdefault(target, {"x": x[:, 0], "y": y})[m] = pred
                print(
                    f"{target} {rate:.0%}: "
                    + ", ".join(f"{m} {np.mean(maes[target][m][rate]):.4f}" for m in methods),
                    flush=True,
                )
    header = ["target", "outliers"] + methods
    rows = [
        [t, f"{r:.0%}"] + [fmt(maes[t][m][r]) for m in methods]
        for t in args.targets
        for r in OUTLIER_RATES
    ]
    table = markdown_table(header, rows)
    per_seed = {t: {m: {str(r): v for r, v in d.items()} for m, d in maes[t].items()} for t in maes}
    _plot_synthetic(args.out / "synthetic.png", args.targets, maes, fits, grid[:, 0], methods)
    return {"table": table, "mae": per_seed}


def _plot_synthetic(path, targets, maes, fits, grid, methods) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(targets), figsize=(4.2 * len(targets), 7), squeeze=False)
    for j, t in enumerate(targets):
        ax = axes[0, j]
        for m in methods:
            mean = [np.mean(maes[t][m][r]) for r in OUTLIER_RATES]
            ax.plot([100 * r for r in OUTLIER_RATES], mean, marker="o", label=m)
        ax.set(title=f"{t}: mean |error| vs outliers", xlabel="outliers (%)", yscale="log")
        ax.legend(fontsize=8)
        ax = axes[1, j]
        if t in fits:
            ax.plot(fits[t]["x"], fits[t]["y"], "k.", ms=2, alpha=0.3, label="data (60 %)")
            ax.plot(grid, TARGETS[t](grid), "k--", lw=1, label="true f")
            for m in methods:
                ax.plot(grid, fits[t][m], lw=1.5, label=m)
            ax.set(title=f"{t}, 60 % outliers, seed 0", ylim=(-1.8, 2.8))
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def flipped_metrics(seed: int, plot_path: Path | None = None, **kwargs: Any) -> dict:
    """Fit ChoiceNet (K = 2) on the flipped data; rho_2 and MAE on a grid."""
    x, y, _ = flipped_data(seed)
    reg = ChoiceNetRegressor(n_mixtures=2, seed=seed, progress=False, **kwargs).fit(x, y)
    grid = np.linspace(-3, 3, 601)[:, None]
    truth = cosexp(grid[:, 0])
    inside = (grid[:, 0] >= 0) & (grid[:, 0] <= 2)
    region = inside & (np.abs(truth) > 0.2)
    rho2 = reg.correlations(grid)[:, 1]
    pi2 = reg.mixture_weights(grid)[:, 1]
    pred = reg.predict(grid)
    if plot_path is not None:
        _plot_flipped(plot_path, x[:, 0], y, grid[:, 0], truth, pred, rho2, pi2)
    return {
        "mae": float(np.abs(pred - truth).mean()),
        "rho2_max": float(rho2[region].max()),
        "rho2_mean": float(rho2[region].mean()),
        "pi2_inside": float(pi2[inside].mean()),
        "pi2_outside": float(pi2[~inside].mean()),
    }


def _plot_flipped(path, x, y, grid, truth, pred, rho2, pi2) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(x, y, "k.", ms=2, alpha=0.4, label="data")
    a.plot(grid, truth, "k--", lw=1, label="true f")
    a.plot(grid, pred, "r", lw=2, label="ChoiceNet mu_1")
    a.axvspan(0, 2, color="orange", alpha=0.1)
    a.set(title="(a) flipped function", xlabel="x")
    a.legend(fontsize=8)
    b.plot(grid, np.ones_like(grid), label="rho_1")
    b.plot(grid, rho2, label="rho_2")
    b.plot(grid, pi2, ":", label="pi_2")
    b.axvspan(0, 2, color="orange", alpha=0.1)
    b.set(title="(b) correlations", xlabel="x", ylim=(-1.1, 1.1))
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_flipped(args: argparse.Namespace) -> dict:
    results = [
        flipped_metrics(s, args.out / "flipped.png" if s == 0 else None, steps=args.steps)
        for s in range(args.seeds)
    ]
    rows = [
        [str(s), f"{r['mae']:.4f}", f"{r['rho2_max']:.3f}", f"{r['rho2_mean']:.3f}",
         f"{r['pi2_inside']:.2f}", f"{r['pi2_outside']:.2f}"]
        for s, r in enumerate(results)
    ]  # fmt: skip
    header = ["seed", "MAE", "max rho_2 (x in [0,2], |f|>0.2)", "mean rho_2", "pi_2 in [0,2]",
              "pi_2 outside"]  # fmt: skip
    return {"table": markdown_table(header, rows), "per_seed": results}


def boston_rmse(method: str, rate: float, seed: int, **kwargs: Any) -> float:
    x_tr, y_tr, x_te, y_te = boston_split(rate, seed)
    reg = make_method(method, seed, hidden_sizes=(256, 128), steps=4000, **kwargs)
    pred = reg.fit(x_tr, y_tr).predict(x_te)
    return float(np.sqrt(np.mean((pred - y_te) ** 2)))


def run_boston(args: argparse.Namespace) -> dict:
    methods = ["choicenet", "l2", "l1", "robust", "mdn"]
    rmse = {m: {r: [] for r in BOSTON_RATES} for m in methods}
    for rate in BOSTON_RATES:
        for m in methods:
            rmse[m][rate] = [boston_rmse(m, rate, s) for s in range(args.seeds)]
            print(f"boston {rate:.0%} {m}: {np.round(rmse[m][rate], 2)}", flush=True)
    rows = [
        [f"{r:.0%}"] + [f"{fmt(rmse[m][r], 2)} ({PAPER_BOSTON[m][i]})" for m in methods]
        for i, r in enumerate(BOSTON_RATES)
    ]
    table = markdown_table(["outliers"] + [f"{m} (paper)" for m in methods], rows)
    return {"table": table, "rmse": {m: {str(r): v for r, v in d.items()} for m, d in rmse.items()}}


ABLATIONS: dict[str, dict[str, Any]] = {
    "default (KL 0.3, tau 3e-2, lambda1 0.1)": {},
    "KL 1": dict(kl_weight=1.0),
    "KL 1e-3": dict(kl_weight=1e-3),
    "tau 1e-2": dict(tau_inv=1e-2),
    "lambda1 0": dict(lambda1=0.0),
    "paper-like: KL 1e-3, tau 1e-2, lambda1 0": dict(kl_weight=1e-3, tau_inv=1e-2, lambda1=0.0),
}
"""Configurations compared by ``ablation``: overrides of the ChoiceNetRegressor defaults."""


def run_ablation(args: argparse.Namespace) -> dict:
    rows, raw = [], {}
    names = args.configs or list(ABLATIONS)
    for name in names:
        kw = ABLATIONS[name]
        t0 = time.time()
        flip = [flipped_metrics(s, **kw) for s in range(args.seeds)]
        boston = {
            r: [boston_rmse("choicenet", r, s, choicenet_kwargs=kw) for s in range(args.seeds)]
            for r in (0.2, 0.4)
        }
        grid = np.linspace(-3, 3, 1000)[:, None]
        cos = {}
        for r in (0.6, 0.8):
            cos[r] = []
            for s in range(args.seeds):
                x, y, _ = synthetic_data("cosexp", r, s)
                reg = make_method("choicenet", s, choicenet_kwargs=kw).fit(x, y)
                cos[r].append(float(np.abs(reg.predict(grid) - cosexp(grid[:, 0])).mean()))
        raw[name] = {"config": kw, "flipped": flip, "boston": boston, "cosexp": cos}
        row = [
            name,
            f"{max(f['rho2_max'] for f in flip):.2f}",
            f"{np.mean([f['mae'] for f in flip]):.3f}",
            f"{np.mean(boston[0.2]):.2f} (max {max(boston[0.2]):.2f})",
            f"{np.mean(boston[0.4]):.2f} (max {max(boston[0.4]):.2f})",
            f"{np.mean(cos[0.6]):.4f}",
            f"{np.mean(cos[0.8]):.4f} (max {max(cos[0.8]):.3f})",
        ]
        rows.append(row)
        print(" | ".join(row), f"[{time.time() - t0:.0f}s]", flush=True)
    header = ["config", "flipped: worst max rho_2", "flipped MAE", "Boston 20 % RMSE",
              "Boston 40 % RMSE", "cosexp 60 % MAE", "cosexp 80 % MAE"]  # fmt: skip
    return {"table": markdown_table(header, rows), "raw": raw}


EXPERIMENTS = {
    "synthetic": run_synthetic,
    "flipped": run_flipped,
    "boston": run_boston,
    "ablation": run_ablation,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell (>= 3 to report)")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps (synthetic)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--configs", nargs="+", choices=list(ABLATIONS), help="ablation subset")
    parser.add_argument("--out", type=Path, default=Path("results/regression"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    for name in names:
        t0 = time.time()
        result = EXPERIMENTS[name](args)
        result["seconds"] = time.time() - t0
        result["seeds"] = args.seeds
        (args.out / f"{name}.md").write_text(result["table"] + "\n")
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"\n## {name} ({args.seeds} seeds, {result['seconds']:.0f} s)\n\n{result['table']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
