"""``BCPolicy``: observation normalisation, an MLP backbone and any head from ``choicebc.heads``.

Actions are modelled in the env's own units, not standardised: a flipped demonstrator's action
``-a`` is then exactly ``rho = -1`` times the target's mean, which is what ChoiceNet's
correlated mixtures express (standardising would move the flip's centre away from 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from choicebc.heads import Mixture, head_from_config, make_head

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


class PolicyLoadError(ValueError):
    """A policy folder is missing, corrupt, or does not fit the env it is used on."""


class BCPolicy(torch.nn.Module):
    """Behaviour-cloning policy: ``obs -> normalise -> MLP -> head``.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        head: head name (``choicenet`` default, ``mdn``, ``mse``, ``l1``, ``robust``).
        hidden: backbone hidden sizes (ReLU).
        obs_mean, obs_std: ``(obs_dim,)`` normalisation statistics (from the demos).
        action_low, action_high: ``(act_dim,)`` action box; actions are clipped to it.
        env_id: task the policy was trained for (checked on load/evaluate when given).
        head_kwargs: hyper-parameters passed to the head.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        head: str = "choicenet",
        hidden: tuple[int, ...] = (256, 256),
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
        env_id: str | None = None,
        head_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.hidden = tuple(int(w) for w in hidden)
        self.env_id = env_id
        layers: list[torch.nn.Module] = []
        last = self.obs_dim
        for width in self.hidden:
            layers += [torch.nn.Linear(last, width), torch.nn.ReLU()]
            last = width
        self.backbone = torch.nn.Sequential(*layers)
        self.head = make_head(head, last, self.act_dim, **(head_kwargs or {}))

        def buf(value: np.ndarray | None, fill: float, size: int) -> Tensor:
            if value is None:
                return torch.full((size,), fill)
            return torch.as_tensor(np.asarray(value, dtype=np.float32).reshape(size))

        self.register_buffer("obs_mean", buf(obs_mean, 0.0, self.obs_dim))
        self.register_buffer("obs_std", buf(obs_std, 1.0, self.obs_dim).clamp_min(1e-6))
        self.register_buffer("action_low", buf(action_low, -np.inf, self.act_dim))
        self.register_buffer("action_high", buf(action_high, np.inf, self.act_dim))

    # ----------------------------------------------------------------- torch interface
    def features(self, obs: Tensor) -> Tensor:
        """``(N, Q)`` backbone features of raw observations ``obs (N, obs_dim)``."""
        return self.backbone((obs - self.obs_mean) / self.obs_std)

    def mixture(self, obs: Tensor) -> Mixture:
        """The head's mixture for raw observations ``obs (N, obs_dim)``."""
        return self.head(self.features(obs))

    def forward(self, obs: Tensor) -> Tensor:
        """``(N, act_dim)`` target-mixture action (ChoiceNet: mu_1, rho_1 = 1), clipped."""
        action = self.head.mode(self.mixture(obs))
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)

    # ----------------------------------------------------------------- numpy interface
    def _obs_tensor(self, obs: np.ndarray) -> Tensor:
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"policy expects observations of shape (N, {self.obs_dim}), got {obs.shape}"
            )
        if not np.isfinite(obs).all():
            raise ValueError("observations contain NaN or inf")
        return torch.from_numpy(obs)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """``(N, act_dim) float32`` target-mixture actions for ``obs (N, obs_dim)``."""
        was_training = self.training
        self.eval()
        try:
            return self(self._obs_tensor(obs)).numpy()
        finally:
            self.train(was_training)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """stable-baselines3 ``BasePolicy.predict`` contract: ``(actions, None)``.

        A single observation ``(obs_dim,)`` gives a single action ``(act_dim,)``. The policy
        is deterministic (the target mixture's mean); ``deterministic`` is accepted for
        compatibility.
        """
        obs = np.asarray(observation, dtype=np.float32)
        if obs.ndim == 1:
            return self.act(obs[None])[0], None
        return self.act(obs), None

    @torch.no_grad()
    def _eval_mixture(self, obs: np.ndarray) -> Mixture:
        was_training = self.training
        self.eval()
        try:
            return self.mixture(self._obs_tensor(obs))
        finally:
            self.train(was_training)

    def correlations(self, obs: np.ndarray) -> np.ndarray:
        """``(N, K)`` rho_k(s); column 0 is 1. Heads without correlations raise ValueError."""
        rho = self._eval_mixture(obs).rho
        if rho is None:
            raise ValueError(f"head {self.head.name!r} has no correlations; use 'choicenet'")
        return rho.numpy()

    def mixture_weights(self, obs: np.ndarray) -> np.ndarray:
        """``(N, K)`` mixture weights pi_k(s)."""
        return self._eval_mixture(obs).pi.numpy()

    def data_quality(
        self, demos: Any = None, *, observations: np.ndarray | None = None, actions=None
    ) -> np.ndarray:
        """``(M,)`` posterior probability that each (s, a) came from the target mixture.

        Args:
            demos: a ``DemoSet`` (its flat ``observations``/``actions`` are scored), or
                ``None`` with ``observations (M, obs_dim)`` and ``actions (M, act_dim)``.
        """
        if demos is not None:
            observations, actions = demos.observations, demos.actions
        if observations is None or actions is None:
            raise ValueError("pass a DemoSet or both observations= and actions=")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 2 or actions.shape[1] != self.act_dim:
            raise ValueError(f"actions must be (M, {self.act_dim}), got {actions.shape}")
        scores = []
        for start in range(0, len(actions), 65536):
            mix = self._eval_mixture(observations[start : start + 65536])
            post = mix.posterior(torch.from_numpy(actions[start : start + 65536]))
            scores.append(post[:, 0].numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    # ----------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        """JSON description: dims, env id, backbone and the head's config."""
        return {
            "format_version": FORMAT_VERSION,
            "env_id": self.env_id,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": list(self.hidden),
            "head": self.head.config(),
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``folder`` (atomic per file)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        tmp = folder / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp))
        os.replace(tmp, folder / WEIGHTS_FILE)
        tmp = folder / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(self.config(), indent=2) + "\n")
        os.replace(tmp, folder / CONFIG_FILE)
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        env_id: str | None = None,
        obs_dim: int | None = None,
        act_dim: int | None = None,
    ) -> BCPolicy:
        """Read a folder written by :meth:`save` (safetensors: no code runs on load).

        Args:
            env_id, obs_dim, act_dim: when given, the saved policy must match them.

        Raises:
            PolicyLoadError: missing/corrupt files, unknown head, or mismatched dims.
        """
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not config_path.is_file():
            raise PolicyLoadError(f"{folder} is not a policy folder: {CONFIG_FILE} is missing")
        if not weights_path.is_file():
            raise PolicyLoadError(f"{weights_path} is missing: the policy folder is incomplete")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise PolicyLoadError(f"{config_path} is not valid JSON: {exc}") from exc
        for key, want in (("env_id", env_id), ("obs_dim", obs_dim), ("act_dim", act_dim)):
            if want is not None and config.get(key) != want:
                raise PolicyLoadError(
                    f"policy in {folder} was trained for {key}={config.get(key)!r}, "
                    f"not {want!r}: train one for this env with `choicebc train`"
                )
        try:
            head = head_from_config(config["head"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyLoadError(f"cannot rebuild the head from {config_path}: {exc}") from exc
        policy = cls(
            config["obs_dim"],
            config["act_dim"],
            head=head.name,
            hidden=tuple(config["hidden"]),
            env_id=config.get("env_id"),
            head_kwargs={
                k: v
                for k, v in head.config().items()
                if k not in ("name", "in_features", "out_features")
            },
        )
        try:
            state = load_file(str(weights_path))
            policy.load_state_dict(state)
        except Exception as exc:  # safetensors header errors, shape mismatches
            raise PolicyLoadError(f"cannot load weights from {weights_path}: {exc}") from exc
        return policy.eval()
