"""An SB3 SAC/PPO training state saved and restored without pickle.

SB3's own ``save`` / ``save_replay_buffer`` write pickles, and reading one runs whatever code it
names: a run folder is a place where such a file can be planted. Here a checkpoint folder holds
only formats that cannot carry code:

- ``networks.safetensors``: the policy's state dict (SAC: actor, critic and critic_target; PPO:
  the actor-critic) and SAC's ``log_ent_coef``;
- ``optimizers.safetensors``: each optimizer's per-parameter state tensors (Adam's ``step``,
  ``exp_avg``, ``exp_avg_sq``), keyed ``<optimizer>.<param index>.<name>``;
- ``replay_buffer.npz`` (SAC): the filled rows of the replay buffer, read with
  ``allow_pickle=False``;
- ``state.json``: what the run is (env, algorithm, hidden layers, seed, objective), SB3's
  counters, the optimizers' hyper-parameters (param groups) and the RNG states of python,
  numpy, torch and the action space.

:func:`load_training_state` writes them into a freshly built model of the same settings; every
shape, dtype and key is checked first and a mismatch is an :class:`ExpertResumeError`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from choicebc.experts.config import ExpertResumeError

NETWORKS_FILE = "networks.safetensors"
OPTIMIZERS_FILE = "optimizers.safetensors"
BUFFER_FILE = "replay_buffer.npz"
STATE_FILE = "state.json"
FORMAT = 1
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining")


def _optimizers(model) -> dict[str, torch.optim.Optimizer]:
    if hasattr(model, "critic"):  # SAC
        opts = {"actor": model.actor.optimizer, "critic": model.critic.optimizer}
        if model.ent_coef_optimizer is not None:
            opts["ent_coef"] = model.ent_coef_optimizer
        return opts
    return {"policy": model.policy.optimizer}


def _buffer_arrays(model) -> list[str]:
    buffer = getattr(model, "replay_buffer", None)
    if buffer is None:
        return []
    return [name for name in BUFFER_ARRAYS if getattr(buffer, name, None) is not None]


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_training_state(model, folder: Path, run: dict[str, Any]) -> None:
    """Write ``model``'s resumable state into the (empty) ``folder``.

    Args:
        model: an SB3 ``SAC`` or ``PPO`` model.
        folder: where the four files go.
        run: what the run is (``env_id``, ``algo``, ``hidden``, ...); resuming requires the same.
    """
    networks = {
        f"policy.{k}": v.detach().contiguous() for k, v in model.policy.state_dict().items()
    }
    if getattr(model, "log_ent_coef", None) is not None:
        networks["log_ent_coef"] = model.log_ent_coef.detach().clone()
    save_file(networks, str(folder / NETWORKS_FILE))
    optim_tensors, param_groups = {}, {}
    for name, opt in _optimizers(model).items():
        sd = opt.state_dict()
        for idx, state in sd["state"].items():
            for key, value in state.items():
                optim_tensors[f"{name}.{idx}.{key}"] = value.detach().contiguous()
        param_groups[name] = _jsonable(sd["param_groups"])
    save_file(optim_tensors, str(folder / OPTIMIZERS_FILE))
    buffer_info = None
    if _buffer_arrays(model):
        buffer = model.replay_buffer
        rows = buffer.buffer_size if buffer.full else buffer.pos
        arrays = {name: getattr(buffer, name)[:rows] for name in _buffer_arrays(model)}
        with (folder / BUFFER_FILE).open("wb") as f:
            np.savez(f, **arrays)
        buffer_info = {"pos": int(buffer.pos), "full": bool(buffer.full), "rows": int(rows)}
        buffer_info["buffer_size"] = int(buffer.buffer_size)
    state = {
        "format": FORMAT,
        "run": run,
        "counters": {name: _jsonable(getattr(model, name)) for name in COUNTERS},
        "param_groups": param_groups,
        "replay_buffer": buffer_info,
        "rng": {
            "python": _jsonable(random.getstate()),
            "numpy": _jsonable(np.random.get_state()),
            "torch": torch.get_rng_state().tolist(),
            "action_space": model.action_space.np_random.bit_generator.state,
        },
    }
    (folder / STATE_FILE).write_text(json.dumps(state))


def read_run(folder: Path) -> dict[str, Any]:
    """The ``run`` dict a checkpoint was saved with (to compare with the settings at hand)."""
    return _read_state(folder)["run"]


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ExpertResumeError(f"cannot read {folder / STATE_FILE}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ExpertResumeError(f"{folder / STATE_FILE} is not a format-{FORMAT} training state")
    return state


def _check(cond: bool, folder: Path, what: str) -> None:
    if not cond:
        raise ExpertResumeError(f"checkpoint in {folder} does not fit this run: {what}")


def load_training_state(model, folder: Path) -> None:
    """Restore what :func:`save_training_state` wrote into a fresh ``model`` of the same run.

    Raises:
        ExpertResumeError: a file is missing or unreadable, or a key, shape or dtype differs
            from ``model``'s (the message names it).
    """
    state = _read_state(folder)
    try:
        networks = load_file(str(folder / NETWORKS_FILE))
        optim_tensors = load_file(str(folder / OPTIMIZERS_FILE))
    except Exception as exc:  # safetensors raises its own error types on a damaged header
        raise ExpertResumeError(f"cannot read the weights in {folder}: {exc}") from exc

    # networks: every key present, shapes and dtypes as the fresh model's
    own = {f"policy.{k}": v for k, v in model.policy.state_dict().items()}
    if getattr(model, "log_ent_coef", None) is not None:
        own["log_ent_coef"] = model.log_ent_coef
    _check(set(networks) == set(own), folder, f"network keys differ ({NETWORKS_FILE})")
    for key, value in networks.items():
        ok = value.shape == own[key].shape and value.dtype == own[key].dtype
        _check(ok, folder, f"{key} is {tuple(value.shape)}, expected {tuple(own[key].shape)}")

    # optimizers: param groups from JSON, per-parameter state tensors shaped like the params
    optimizers, groups = _optimizers(model), state.get("param_groups")
    _check(isinstance(groups, dict) and set(groups) == set(optimizers), folder, "optimizers")
    optim_states = {}
    for name, opt in optimizers.items():
        params = [p for g in opt.param_groups for p in g["params"]]
        saved = groups[name]
        _check(isinstance(saved, list) and len(saved) == len(opt.param_groups), folder, name)
        for g, own_group in zip(saved, opt.param_groups, strict=True):
            _check(isinstance(g, dict), folder, f"{name} param group")
            _check(len(g.get("params", [])) == len(own_group["params"]), folder, f"{name} size")
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in optim_tensors.items():
            opt_name, _, rest = key.partition(".")
            if opt_name != name:
                continue
            idx, _, entry = rest.partition(".")
            _check(idx.isdigit() and int(idx) < len(params), folder, f"optimizer key {key}")
            shape_ok = entry == "step" or value.shape == params[int(idx)].shape
            _check(shape_ok, folder, f"optimizer state {key} is {tuple(value.shape)}")
            per_param.setdefault(int(idx), {})[entry] = value
        optim_states[name] = {"state": per_param, "param_groups": saved}
    known = {key.partition(".")[0] for key in optim_tensors}
    _check(known <= set(optimizers), folder, f"unknown optimizers {sorted(known)}")

    # replay buffer: the filled rows, same trailing shapes and dtypes
    arrays: dict[str, np.ndarray] = {}
    names = _buffer_arrays(model)
    info = state.get("replay_buffer")
    if names:
        buffer = model.replay_buffer
        _check(isinstance(info, dict), folder, "no replay buffer saved")
        _check(info.get("buffer_size") == buffer.buffer_size, folder, "replay buffer size")
        rows = info.get("rows")
        full, pos = info.get("full"), info.get("pos")
        ok = isinstance(full, bool) and isinstance(pos, int) and 0 <= pos < buffer.buffer_size
        _check(ok and rows == (buffer.buffer_size if full else pos), folder, "buffer rows")
        try:
            with np.load(folder / BUFFER_FILE, allow_pickle=False) as npz:
                _check(set(npz.files) == set(names), folder, f"arrays in {BUFFER_FILE}")
                arrays = {name: npz[name] for name in names}
        except (OSError, ValueError) as exc:
            raise ExpertResumeError(f"cannot read {folder / BUFFER_FILE}: {exc}") from exc
        for name, value in arrays.items():
            own_arr = getattr(buffer, name)
            ok = value.shape == (rows, *own_arr.shape[1:]) and value.dtype == own_arr.dtype
            _check(ok, folder, f"replay buffer {name} is {value.shape} {value.dtype}")

    counters = state.get("counters")
    _check(isinstance(counters, dict), folder, "no counters")
    for name in COUNTERS:
        value = counters.get(name)
        _check(isinstance(value, int | float) and not isinstance(value, bool), folder, name)

    # everything checked: write it in
    with torch.no_grad():
        policy_state = {
            k.removeprefix("policy."): v for k, v in networks.items() if k != "log_ent_coef"
        }
        model.policy.load_state_dict(policy_state)
        if "log_ent_coef" in networks:
            model.log_ent_coef.copy_(networks["log_ent_coef"])
    try:
        for name, opt in optimizers.items():
            opt.load_state_dict(optim_states[name])
        for name in COUNTERS:
            setattr(model, name, counters[name])
        rng = state["rng"]
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
        model.action_space.np_random.bit_generator.state = rng["action_space"]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ExpertResumeError(f"cannot restore the training state in {folder}: {exc}") from exc
    if names:
        buffer = model.replay_buffer
        for name, value in arrays.items():
            getattr(buffer, name)[: len(value)] = value
        buffer.pos, buffer.full = info["pos"], info["full"]
