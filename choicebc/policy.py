"""``BCPolicy``: observation normalisation, an MLP backbone and any head from ``choicebc.heads``.

Actions are modelled in the env's own units, not standardised: a flipped demonstrator's action
``-a`` is then exactly ``rho = -1`` times the target's mean, which is what ChoiceNet's
correlated mixtures express (standardising would move the flip's centre away from 0).

A *discrete* action (``Discrete(n)``: ``n_actions=n``) is classified instead: the head is a
classification head from :mod:`choicebc.heads.classification` (``choicenet_cls``, the eq. (9)
head, by default; ``ce``, ``fcorrection``, ``mdn_cls``) over the ``n`` action ids, the demos'
actions are ``(M, 1)`` integer ids, and :meth:`BCPolicy.act` returns the target mixture's most
probable id ``(N,) int64``. ``head="choicenet"`` / ``"mdn"`` name their classification versions
there, so one config trains either kind of task.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from choicebc.atomic import save_safetensors_atomic, write_json_atomic
from choicebc.heads import HEADS, Mixture, make_head
from choicebc.heads.base import TARGET_RHO_MIN
from choicebc.heads.classification import ClassifierHead

# the regression head names that have a classification counterpart (discrete actions)
DISCRETE_HEAD_NAMES = {"choicenet": "choicenet_cls", "mdn": "mdn_cls"}

DISCRETE_HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    # a CE warm-up before eq. (9) alone (ChoiceNetClassifierHead's lambda1; docs/design-notes.md,
    # "The cross-entropy warm-up for discrete actions")
    "choicenet_cls": {"lambda1": 0.1, "lambda1_steps": 300},
}
"""Head hyper-parameters a discrete-action BCPolicy uses unless ``head_kwargs`` sets them."""

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

# what a policy folder's config.json may ask for; it is checked against these before anything
# it sizes is allocated (a config is read from disk, so it may have been edited or planted)
MAX_CONFIG_BYTES = 16 * 2**20
MAX_SIZE = 1_000_000
"""Largest obs_dim, act_dim, n_actions, hidden width or head in/out features of a config."""
MAX_LAYERS = 64
"""Most hidden layers a config may list."""
MAX_HPARAM_INT = 10**9
"""Largest magnitude of an integer head hyper-parameter (a size, or a step count)."""
MAX_PARAMETERS = 10**9
"""Most parameters and buffer entries (4 GB in float32) a loaded policy may hold."""


class PolicyLoadError(ValueError):
    """A policy folder is missing, corrupt, or does not fit the env it is used on."""


def read_config(path: Path) -> dict[str, Any]:
    """The JSON object in a policy folder's ``config.json``, or a :class:`PolicyLoadError`
    that says why not (missing, larger than :data:`MAX_CONFIG_BYTES`, not UTF-8 JSON, not an
    object)."""
    if not path.is_file():
        raise PolicyLoadError(f"{path.parent} is not a policy folder: {path.name} is missing")
    with path.open("rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise PolicyLoadError(
            f"{path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a policy config "
            "(save the policy again with `choicebc train` or BCPolicy.save)"
        )
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PolicyLoadError(
            f"{path} is not a text file (not UTF-8: {exc.reason}): not a policy config; save "
            "the policy again with `choicebc train` or BCPolicy.save"
        ) from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number
        raise PolicyLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise PolicyLoadError(
            f"{path} holds a JSON {type(config).__name__}, not an object: not a policy config; "
            "save the policy again with `choicebc train` or BCPolicy.save"
        )
    return config


def config_size(config: dict[str, Any], key: str, path: Path, low: int = 1) -> int:
    """``config[key]`` as an int in ``[low, MAX_SIZE]``, or a :class:`PolicyLoadError`."""
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_SIZE:
        raise PolicyLoadError(
            f"{path}: {key} must be an integer in [{low}, {MAX_SIZE:,}], got {value!r}: "
            "the config is corrupt; save the policy again"
        )
    return value


def resolve_head_name(head: str, n_actions: int | None) -> str:
    """The registered head for ``head`` on a Box (``n_actions=None``) or discrete action.

    ``choicenet``/``mdn`` become ``choicenet_cls``/``mdn_cls`` on a discrete action.

    Raises:
        ValueError: a regression head (``mse``, ``l1``, ``robust``) for a discrete action, a
            classification head for a Box action, or an unknown name.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {sorted(HEADS)}")
    is_cls = issubclass(HEADS[head], ClassifierHead)
    classifiers = sorted(n for n, cls in HEADS.items() if issubclass(cls, ClassifierHead))
    if n_actions is None:
        if is_cls:
            raise ValueError(
                f"head {head!r} classifies discrete actions, but this action is continuous; "
                f"use one of {sorted(set(HEADS) - set(classifiers))}"
            )
        return head
    if is_cls:
        return head
    if head in DISCRETE_HEAD_NAMES:
        return DISCRETE_HEAD_NAMES[head]
    raise ValueError(
        f"head {head!r} regresses continuous actions, but this action is discrete "
        f"(Discrete({n_actions})); use one of {classifiers + sorted(DISCRETE_HEAD_NAMES)}"
    )


def _constructor_arguments(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """:class:`BCPolicy` keyword arguments from a decoded ``config.json``, each checked for its
    type and bounds (sizes in ``[1, MAX_SIZE]``) without building anything.

    Raises:
        PolicyLoadError: a missing field, a wrong type, a size out of bounds, or a head whose
            in/out features do not fit the backbone and the action.
    """
    obs_dim, act_dim = config_size(config, "obs_dim", path), config_size(config, "act_dim", path)
    n_actions = None if config.get("n_actions") is None else config_size(config, "n_actions", path)
    hidden = config.get("hidden")
    if not isinstance(hidden, list) or len(hidden) > MAX_LAYERS:
        raise PolicyLoadError(
            f"{path}: hidden must be a list of at most {MAX_LAYERS} layer widths, got "
            f"{str(hidden)[:80]}: the config is corrupt; save the policy again"
        )
    widths = [config_size({"hidden": w}, "hidden", path) for w in hidden]
    head = config.get("head")
    if not isinstance(head, dict) or not isinstance(head.get("name"), str):
        raise PolicyLoadError(f"{path}: head must be an object with a name, got {str(head)[:80]}")
    features = {k: config_size(head, k, path) for k in ("in_features", "out_features")}
    want = {"in_features": widths[-1] if widths else obs_dim, "out_features": n_actions or act_dim}
    if features != want:
        raise PolicyLoadError(
            f"{path}: the head takes {features} but the backbone and the action give {want}: "
            "the config is corrupt; save the policy again"
        )
    head_kwargs = {k: v for k, v in head.items() if k not in ("name", *features)}
    for key, value in head_kwargs.items():
        if not _is_hparam(value):
            raise PolicyLoadError(
                f"{path}: head hyper-parameter {key}={str(value)[:80]} is not a number, string, "
                f"bool, null or list of numbers (integers within {MAX_HPARAM_INT:.0e})"
            )
    env_id, choice = config.get("env_id"), config.get("choice", "step")
    choice_info = config.get("choice_info")
    if env_id is not None and not isinstance(env_id, str):
        raise PolicyLoadError(f"{path}: env_id must be a string, got {env_id!r}")
    if choice not in ("step", "episode", "group"):
        raise PolicyLoadError(f"{path}: unknown choice {choice!r} (step, episode or group)")
    if choice_info is not None and not isinstance(choice_info, dict):
        raise PolicyLoadError(f"{path}: choice_info must be an object, got {choice_info!r}")
    return {
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "head": head["name"],
        "hidden": tuple(widths),
        "env_id": env_id,
        "head_kwargs": head_kwargs,
        "n_actions": n_actions,
        "choice": choice,
        "choice_info": choice_info,
    }


def _is_hparam(value: Any, depth: int = 0) -> bool:
    """A head hyper-parameter a config may hold: a JSON scalar with integers within
    :data:`MAX_HPARAM_INT`, or a list (of lists) of numbers such as a transition matrix."""
    if isinstance(value, list):
        return depth < 2 and all(not isinstance(v, str) and _is_hparam(v, depth + 1) for v in value)
    if type(value) is int:
        return abs(value) <= MAX_HPARAM_INT
    return value is None or isinstance(value, bool | float | str)


def _check_parameter_bound(kwargs: dict[str, Any], path: Path) -> None:
    """Raise :class:`PolicyLoadError` unless an upper bound of the parameters the config asks
    for is <= :data:`MAX_PARAMETERS`: the backbone exactly, the head as ``(in + 1 + out) * out``
    times each of its integer hyper-parameters (a head is at most that big)."""
    widths = [kwargs["obs_dim"], *kwargs["hidden"]]
    backbone = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False))
    q, d = widths[-1], kwargs["n_actions"] or kwargs["act_dim"]  # the head's in/out features
    ints = [abs(v) for v in kwargs["head_kwargs"].values() if type(v) is int]
    if backbone + (q + 1 + d) * d * math.prod(max(1, v) for v in ints) > MAX_PARAMETERS:
        raise PolicyLoadError(
            f"{path} describes a policy of more than {MAX_PARAMETERS:,} parameters: the "
            "config is corrupt; save the policy again"
        )


def _expected_shapes(
    cls: type[BCPolicy], kwargs: dict[str, Any], path: Path
) -> dict[str, tuple[int, ...]] | None:
    """The state-dict shapes of ``cls(**kwargs)``, built on the meta device (nothing is
    allocated); ``None`` for a head that cannot be built without values, after checking its
    :func:`_check_parameter_bound`.

    Raises:
        PolicyLoadError: arguments the constructor refuses, or more than
            :data:`MAX_PARAMETERS` parameters and buffer entries.
    """
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in cls(**kwargs).state_dict().items()}
    except (KeyError, TypeError, ValueError) as exc:  # e.g. a Box head with n_actions
        raise PolicyLoadError(f"inconsistent policy config {path}: {exc}") from exc
    except (RuntimeError, NotImplementedError):
        # a head that checks data in its constructor (fcorrection's transition matrix)
        _check_parameter_bound(kwargs, path)
        return None
    if sum(math.prod(shape) for shape in shapes.values()) > MAX_PARAMETERS:
        raise PolicyLoadError(
            f"{path} describes a policy of more than {MAX_PARAMETERS:,} parameters: the "
            "config is corrupt; save the policy again"
        )
    return shapes


def _stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file holds, from its header (no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors header errors
        raise PolicyLoadError(f"cannot load weights from {path}: {exc}") from exc


class BCPolicy(torch.nn.Module):
    """Behaviour-cloning policy: ``obs -> normalise -> MLP -> head``.

    Args:
        obs_dim: observation size.
        act_dim: action size (1 for a discrete action: one id per step).
        head: head name (``choicenet`` default, ``mdn``, ``mse``, ``l1``, ``robust``; for a
            discrete action ``choicenet_cls`` (= ``choicenet``), ``ce``, ``fcorrection``,
            ``mdn_cls`` (= ``mdn``)).
        hidden: backbone hidden sizes (ReLU).
        obs_mean, obs_std: ``(obs_dim,)`` normalisation statistics (from the demos).
        action_low, action_high: ``(act_dim,)`` action box; actions are clipped to it.
        env_id: task the policy was trained for (checked on load/evaluate when given).
        head_kwargs: hyper-parameters passed to the head.
        n_actions: ``None`` for a Box action; ``n`` for ``Discrete(n)`` (the head then
            classifies the ``n`` action ids, and ``act_dim`` must be 1).
        choice: how the head's mixture was chosen in training (:mod:`choicebc.choice`):
            ``step``, ``episode`` or ``group``; :meth:`demo_quality` follows it.
        choice_info: what decided the choice (``choice="auto"``: the probe's likelihoods).

    Raises:
        ValueError: a head that does not fit the action kind, or ``act_dim != 1`` with
            ``n_actions``.
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
        n_actions: int | None = None,
        choice: str = "step",
        choice_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.choice = choice
        self.choice_info = dict(choice_info or {})
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.n_actions = None if n_actions is None else int(n_actions)
        if self.n_actions is not None and (self.act_dim != 1 or self.n_actions < 2):
            raise ValueError(
                f"a discrete action is one id per step: need act_dim=1 and n_actions >= 2, "
                f"got act_dim={act_dim}, n_actions={n_actions}"
            )
        head = resolve_head_name(head, self.n_actions)
        self.hidden = tuple(int(w) for w in hidden)
        self.env_id = env_id
        layers: list[torch.nn.Module] = []
        last = self.obs_dim
        for width in self.hidden:
            layers += [torch.nn.Linear(last, width), torch.nn.ReLU()]
            last = width
        self.backbone = torch.nn.Sequential(*layers)
        out = self.act_dim if self.n_actions is None else self.n_actions  # logits per id
        head_kwargs = dict(head_kwargs or {})
        if self.n_actions is not None:
            head_kwargs = {**DISCRETE_HEAD_DEFAULTS.get(head, {}), **head_kwargs}
        self.head = make_head(head, last, out, **head_kwargs)

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

    @property
    def discrete(self) -> bool:
        """Whether the action is ``Discrete(n_actions)``."""
        return self.n_actions is not None

    def forward(self, obs: Tensor) -> Tensor:
        """``(N, act_dim)`` target-mixture action (ChoiceNet: mu_1, rho_1 = 1), clipped;
        discrete: ``(N,) int64`` the target mixture's most probable action id."""
        action = self.head.mode(self.mixture(obs))
        if self.discrete:
            return action
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
        """``(N, act_dim) float32`` target-mixture actions for ``obs (N, obs_dim)``
        (discrete: ``(N,) int64`` action ids)."""
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

        A single observation ``(obs_dim,)`` gives a single action ``(act_dim,)`` (discrete:
        a 0-d int64 array, as SB3 returns for ``Discrete``; a batch gives ``(N,)``). The
        policy is deterministic (the target mixture's mean or most probable id);
        ``deterministic`` is accepted for compatibility.
        """
        obs = np.asarray(observation, dtype=np.float32)
        if obs.ndim == 1:
            return np.asarray(self.act(obs[None])[0]), None
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
            want = "choicenet_cls" if self.discrete else "choicenet"
            raise ValueError(f"head {self.head.name!r} has no correlations; use {want!r}")
        return rho.numpy()

    def mixture_weights(self, obs: np.ndarray) -> np.ndarray:
        """``(N, K)`` mixture weights pi_k(s)."""
        return self._eval_mixture(obs).pi.numpy()

    def data_quality(
        self, demos: Any = None, *, observations: np.ndarray | None = None, actions=None
    ) -> np.ndarray:
        """``(M,)`` posterior probability that each (s, a) came from the target mixture.

        Continuous actions: :meth:`Mixture.target_posterior` — for ChoiceNet the responsibility
        of the components with ``rho_k >= 0.95`` (copies of the target distribution), for
        MDN/GMM that of the most probable component; 1-component heads raise.

        Args:
            demos: a ``DemoSet`` (its flat ``observations``/``actions`` are scored), or
                ``None`` with ``observations (M, obs_dim)`` and ``actions (M, act_dim)``
                (discrete: integer ids ``(M,)`` or ``(M, 1)``).

        Discrete actions: the posterior that the recorded id came from the target mixture
        (the head's ``target_posterior``; ``choicenet_cls`` and ``fcorrection`` have one).

        Raises:
            ValueError: wrong shapes, ids out of range or non-integer ids, or a head without
                a noise model.
        """
        if demos is not None:
            observations, actions = demos.observations, demos.actions
        if observations is None or actions is None:
            raise ValueError("pass a DemoSet or both observations= and actions=")
        if self.discrete:
            labels = torch.as_tensor(np.asarray(actions))
            scores = []
            for start in range(0, len(labels), 65536):
                mix = self._eval_mixture(observations[start : start + 65536])
                post = self.head.target_posterior(mix, labels[start : start + 65536])
                scores.append(post.numpy())
            return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 2 or actions.shape[1] != self.act_dim:
            raise ValueError(f"actions must be (M, {self.act_dim}), got {actions.shape}")
        scores = []
        for start in range(0, len(actions), 65536):
            mix = self._eval_mixture(observations[start : start + 65536])
            if mix.mu.shape[1] == 1:
                raise ValueError(
                    f"head {self.head.name!r} has a single component and no noise model: "
                    "train with head='choicenet' (or mdn/gmm) to score data quality"
                )
            post = mix.target_posterior(torch.from_numpy(actions[start : start + 65536]))
            scores.append(post.numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def demo_quality(self, demos: Any) -> np.ndarray:
        """``(E,)`` probability that the target demonstrator drove each episode of ``demos``.

        A policy trained with one choice per demonstration (``choice`` ``episode`` or
        ``group``): the posterior of the episode's unit over the mixtures under that one
        choice (:mod:`choicebc.choice`: the product of its steps' densities times the weights
        at its first state), summed over the mixtures whose mean correlation over the unit's
        first steps (``choice_info["horizon"]``, where the drivers' states meet) or over all
        its steps is >= 0.95 (copies of the target; :func:`choicebc.choice.merge_copies`).
        With ``group``, the episodes of a group share it (``demos.groups``; without groups
        each episode is its own). Any other policy: the mean of :meth:`data_quality` over the
        episode's steps.

        Raises:
            ValueError: as :meth:`data_quality`.
        """
        lengths = np.asarray(demos.episode_lengths)
        if self.choice == "step":
            from choicebc.demoset import episode_means

            return episode_means(self.data_quality(demos), lengths)
        from choicebc.choice import (
            family_mask,
            merge_copies,
            score_rows,
            unit_ids,
            unit_log_scores,
            unit_mean,
        )

        groups = getattr(demos, "groups", None) if self.choice == "group" else None
        units, n_units = unit_ids(
            demos.episode_ids, groups, "group" if groups is not None else "episode"
        )
        obs = self._obs_tensor(demos.observations)
        actions = torch.as_tensor(np.asarray(demos.actions, dtype=np.float32))
        if actions.shape != (len(obs), self.act_dim):
            raise ValueError(f"actions must be (M, {self.act_dim}), got {tuple(actions.shape)}")
        log_pi, log_density, rho, _ = score_rows(self, obs, actions)
        units_t = torch.from_numpy(units)
        timesteps = np.asarray(demos.timesteps)
        first = torch.from_numpy(timesteps == 0)
        q = torch.softmax(unit_log_scores(log_pi, log_density, units_t, first, n_units), -1)
        q = merge_copies(q, unit_mean(rho, units_t, n_units))  # as the training's E-step
        early = torch.from_numpy(timesteps < self.choice_info.get("horizon", 5))
        target = family_mask(unit_mean(rho[early], units_t[early], n_units), TARGET_RHO_MIN)
        unit_quality = (q * target).sum(-1).numpy()
        return unit_quality[units[np.cumsum(lengths) - lengths]]

    # ----------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        """JSON description: dims, env id, backbone and the head's config."""
        return {
            "format_version": FORMAT_VERSION,
            "env_id": self.env_id,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "n_actions": self.n_actions,
            "hidden": list(self.hidden),
            "head": self.head.config(),
            "choice": self.choice,
            "choice_info": self.choice_info,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``folder`` (atomic per file)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_safetensors_atomic(self.state_dict(), folder / WEIGHTS_FILE)
        write_json_atomic(folder / CONFIG_FILE, self.config())
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        env_id: str | None = None,
        obs_dim: int | None = None,
        act_dim: int | None = None,
        n_actions: int | None = None,
    ) -> BCPolicy:
        """Read a folder written by :meth:`save` (safetensors: no code runs on load).

        Args:
            env_id, obs_dim, act_dim, n_actions: when given, the saved policy must match them
                (``n_actions``: the number of ids of a discrete action).

        Raises:
            PolicyLoadError: missing/corrupt files, unknown head, or mismatched dims.
        """
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        config = read_config(config_path)
        if not weights_path.is_file():
            raise PolicyLoadError(f"{weights_path} is missing: the policy folder is incomplete")
        wanted = (("env_id", env_id), ("obs_dim", obs_dim), ("act_dim", act_dim))
        for key, want in (*wanted, ("n_actions", n_actions)):
            if want is not None and config.get(key) != want:
                raise PolicyLoadError(
                    f"policy in {folder} was trained for {key}={config.get(key)!r}, "
                    f"not {want!r}: train one for this env with `choicebc train`"
                )
        kwargs = _constructor_arguments(config, config_path)
        # the sizes the config asks for are checked against the weights file's header before
        # anything is allocated: the policy built from them holds no more than the file does
        expected = _expected_shapes(cls, kwargs, config_path)
        stored = _stored_shapes(weights_path)
        if expected is not None and stored != expected:
            differ = sorted(k for k in expected.keys() | stored if expected.get(k) != stored.get(k))
            raise PolicyLoadError(
                f"the weights in {weights_path} do not fit {config_path} ({len(differ)} tensors "
                f"differ, e.g. {differ[0]}: config {expected.get(differ[0])}, weights "
                f"{stored.get(differ[0])}): the folder mixes two policies; save it again"
            )
        try:
            policy = cls(**kwargs)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PolicyLoadError(f"inconsistent policy config {config_path}: {exc}") from exc
        try:
            state = load_file(str(weights_path))
            policy.load_state_dict(state)
        except Exception as exc:  # safetensors header errors, shape mismatches
            raise PolicyLoadError(f"cannot load weights from {weights_path}: {exc}") from exc
        return policy.eval()
