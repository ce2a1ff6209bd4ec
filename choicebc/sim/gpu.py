"""``gpu`` backend: N MuJoCo Warp worlds stepped together on one device, torch tensors zero-copy.

Physics is MuJoCo Warp (``mujoco_warp``, the ``[gpu]`` extra: ``pip install choicebc[gpu]``): the
model and the batched data live on the device as Warp arrays, and this module reads and writes
them as torch tensors that alias the same memory (``wp.to_torch``): no host round trip between
the simulator and a torch policy on the same device. Observations, rewards and terminations are
the task functions of :mod:`choicebc.envs`, run on those tensors (cast to float64 first, so only
the physics is float32). On CUDA one env-step (``frame_skip`` physics steps, plus
``rne_postconstraint`` for tasks that read ``cfrc_ext``) is a captured CUDA graph, replayed with
one launch.

Differences from the ``cpu`` backend, all from MuJoCo Warp:

* the state is float32 (MuJoCo's is float64): trajectories agree with gymnasium to ~1e-6 at
  first and drift apart over hundreds of steps where contacts make the dynamics chaotic (the
  equivalence test measures and bounds this; see ``tests/test_sim_gpu.py``);
* instability is detected here, not by MuJoCo: a world whose ``qpos``/``qvel``/``qacc`` has an
  entry that is NaN or larger than ``mjMAXVAL = 1e10`` in magnitude (MuJoCo's own
  ``mj_checkPos/Vel/Acc`` criterion), or whose observation or reward is not finite, is reported in
  ``info["unstable"]`` and reset, as the :class:`~choicebc.sim.base.BatchedEnv` protocol says;
* contacts and constraint rows live in preallocated buffers; they are sized from the model so that
  they cannot overflow (:func:`contact_capacity`), and an overflow raises :class:`CapacityError`
  rather than silently dropping contacts;
* one physics difference (MuJoCo Warp 4.0.0): for a plane-capsule contact with the capsule within
  30 degrees of the plane normal, Warp orients the friction pyramid along a fixed axis where MuJoCo
  uses the capsule axis projected on the plane. Gymnasium's tasks use pyramidal cones, so friction
  differs there: Ant's steep legs (52 of 250 random-action steps had such a contact at a substep
  start, with one-step velocity differences up to ~2); the planar tasks are unaffected (both
  frames give the same pyramid).

Measured on Warp's CPU device (``tests/test_sim_gpu.py``, ``scripts/bench_sim_gpu.py``): started
from gymnasium's state, one env-step agrees to <= 6e-4 in the observation and <= 2e-5 in the
reward on every task, away from the Ant contacts above.

``device="cpu"`` runs the same code on Warp's CPU device (LLVM-compiled kernels): this is how the
backend is tested without a GPU. It is a correctness path, much slower than the ``cpu`` backend.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import mujoco
import numpy as np

try:
    import warp as wp

    if wp.config.log_level == wp.LOG_INFO:  # Warp's default prints every module load
        wp.config.log_level = wp.LOG_WARNING
    import mujoco_warp as mjw
except ImportError as exc:  # make_batched(backend="auto") falls back to cpu on this error
    raise ImportError(
        f"the gpu backend needs MuJoCo Warp ({exc}): install the extra with "
        "`pip install 'choicebc[gpu]'` (mujoco-warp, warp-lang), or use backend='cpu'"
    ) from exc

import torch

from choicebc.envs import get_task
from choicebc.sim.base import (
    ActionError,
    BackendUnavailableError,
    EpisodeSchedule,
    check_actions,
    check_num_envs,
)

__all__ = ["CapacityError", "GpuBatchedEnv", "contact_capacity", "resolve_device"]

MJ_MAXVAL = 1e10
"""MuJoCo's ``mjMAXVAL``: ``mj_checkPos/Vel/Acc`` call a state entry larger than this unstable."""


class CapacityError(RuntimeError):
    """MuJoCo Warp ran out of contact or constraint slots (results would be wrong)."""


def resolve_device(device: Any = None) -> wp.context.Device:
    """The Warp device to simulate on.

    Args:
        device: ``None`` (the default CUDA device; CUDA required), ``"cpu"`` (Warp's CPU device:
            slow, for testing), ``"cuda"``, ``"cuda:K"`` or a ``torch.device`` of those.

    Raises:
        BackendUnavailableError: ``device`` is None or CUDA and Warp or torch sees no CUDA device.
        ValueError: a device name that is neither CPU nor CUDA.
    """
    name = "cuda" if device is None else str(device)
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:K', got {device!r}")
    if name.startswith("cuda"):
        if not wp.is_cuda_available():
            hint = " (none was given, and the gpu backend runs on CUDA by default)" * (
                device is None
            )
            raise BackendUnavailableError(
                f"the gpu backend needs a CUDA device and Warp sees none{hint}: use "
                "backend='cpu', or device='cpu' to run the gpu backend's code on the CPU (slow, "
                "for testing)"
            )
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "Warp sees a CUDA device but torch does not (a CPU-only torch build?): the gpu "
                "backend hands torch tensors on the simulation's device; install a CUDA build of "
                "torch, or use backend='cpu'"
            )
    try:
        return wp.get_device(name)
    except (RuntimeError, ValueError) as exc:
        raise BackendUnavailableError(f"Warp cannot use device {name!r}: {exc}") from exc


def contact_capacity(model: mujoco.MjModel) -> tuple[int, int]:
    """``(nconmax, njmax)``: contacts and constraint rows one world can never exceed.

    ``nconmax`` is 2 contacts for every geom pair that can collide (MuJoCo's filters: contype /
    conaffinity, same body, parent-child), which bounds every pair type these models use
    (plane/sphere/capsule: at most 2). ``njmax`` is the rows of that many contacts (pyramidal:
    ``2 (condim - 1)``, elliptic: ``condim``; 1 for frictionless) plus one per limited joint,
    equality row and dof with friction loss. Both are at least 8.
    """
    filter_parent = not (model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_FILTERPARENT)
    pairs = 0
    weld = model.body_weldid
    for i in range(model.ngeom):
        for j in range(i + 1, model.ngeom):
            if not (
                (model.geom_contype[i] & model.geom_conaffinity[j])
                or (model.geom_contype[j] & model.geom_conaffinity[i])
            ):
                continue
            wi, wj = weld[model.geom_bodyid[i]], weld[model.geom_bodyid[j]]
            if wi == wj:
                continue
            if filter_parent and wi != 0 and wj != 0:  # mj_collision's parent-child filter
                pi, pj = weld[model.body_parentid[wi]], weld[model.body_parentid[wj]]
                if wi == pj or wj == pi:
                    continue
            pairs += 1
    pairs += model.npair
    nconmax = max(8, 2 * pairs)
    condim = int(model.geom_condim.max()) if model.ngeom else 1
    if model.npair:
        condim = max(condim, int(model.pair_dim.max()))
    elliptic = model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    rows = condim if elliptic else (1 if condim == 1 else 2 * (condim - 1))
    eq_rows = 6 * model.neq
    njmax = nconmax * rows + int(model.jnt_limited.sum()) + eq_rows
    njmax += int((model.dof_frictionloss > 0).sum()) + int(model.tendon_limited.sum())
    return nconmax, max(8, njmax)


class GpuBatchedEnv:
    """``num_envs`` worlds of one task in MuJoCo Warp on one device (the :class:`BatchedEnv`).

    :meth:`reset` / :meth:`step` follow the protocol with numpy arrays (see
    :class:`~choicebc.sim.base.BatchedEnv`); :meth:`reset_torch` / :meth:`step_torch` take and
    return torch tensors on :attr:`device` (no copy to the host: the path for a torch policy on
    the same GPU). Same-step autoreset, per-episode seeds from :class:`EpisodeSchedule`, unstable
    worlds reset and reported, as every backend.

    Args:
        env_id: task id (see :func:`choicebc.envs.known_env_ids`).
        num_envs: N >= 1 worlds.
        seed: env seed; episode ``j`` starts from ``episode_seed(seed, j)``.
        device: ``None`` (CUDA, required), ``"cpu"`` (Warp's CPU device, for tests), ``"cuda"``,
            ``"cuda:K"`` or a ``torch.device``.
        schedule: share episode numbering with other envs; with a limit, slots that finish once
            it is reached turn inactive (``info["active"]`` False, frozen observation, zero reward;
            their worlds keep running with zero control, as a batch cannot skip worlds).
        nconmax, njmax: contacts / constraint rows per world (default :func:`contact_capacity`).
        graph: replay each env-step as a captured CUDA graph (default: on CUDA; not on CPU).

    Attributes:
        device: the ``torch.device`` of every tensor this env returns from ``*_torch`` calls.
        obs_dim, act_dim: sizes; action_low, action_high: ``(act_dim,) float32`` numpy box.

    Raises:
        ImportError: (at import) the ``[gpu]`` extra is not installed.
        BackendUnavailableError: no CUDA device and ``device`` not ``"cpu"``.
        UnknownEnvError: unknown ``env_id``; ValueError: ``num_envs < 1``, a bad device name, or
        ``graph=True`` on the CPU.
        NotImplementedError: the model uses a feature MuJoCo Warp lacks.
    """

    backend = "gpu"

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int = 0,
        *,
        device: Any = None,
        schedule: EpisodeSchedule | None = None,
        nconmax: int | None = None,
        njmax: int | None = None,
        graph: bool | None = None,
    ) -> None:
        self.task = task = get_task(env_id)
        if getattr(task, "n_actions", None) is not None:
            raise BackendUnavailableError(
                f"{env_id} has a discrete action: run it on backend='cpu' or 'gym' "
                "(backend='auto' picks cpu for it)"
            )
        self.n_actions = None  # Box actions only (see BatchedEnv)
        self.env_id = env_id
        self.num_envs = n = check_num_envs(num_envs)
        self.seed = int(seed)
        self._wp_device = resolve_device(device)
        self.device = torch.device(wp.device_to_torch(self._wp_device))
        if graph and not self._wp_device.is_cuda:
            raise ValueError("graph=True needs a CUDA device (graphs are a CUDA feature)")
        self._use_graph = self._wp_device.is_cuda if graph is None else bool(graph)
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        self.action_low, self.action_high = task.action_low, task.action_high
        self._model = model = task.model
        self._dt = task.dt
        default_ncon, default_nj = contact_capacity(model)
        self.nconmax = int(nconmax) if nconmax is not None else default_ncon
        self.njmax = int(njmax) if njmax is not None else default_nj

        with wp.ScopedDevice(self._wp_device):
            self._m = mjw.put_model(model)
            self._m.opt.warn_overflow = 0  # overflows raise CapacityError instead of printing
            self._d = mjw.make_data(model, nworld=n, nconmax=self.nconmax, njmax=self.njmax)
            self._reset_mask = wp.zeros(n, dtype=bool)
        self._stream = wp.get_stream(self._wp_device) if self._wp_device.is_cuda else None
        self._torch_stream = wp.stream_to_torch(self._stream) if self._stream else None
        self._graph = None

        d, dev = self._d, self.device
        self._qpos, self._qvel, self._qacc = (wp.to_torch(a) for a in (d.qpos, d.qvel, d.qacc))
        self._ctrl = wp.to_torch(d.ctrl)
        self._overflow = wp.to_torch(d.overflow)
        self._mask_t = wp.to_torch(self._reset_mask)
        self._views: dict[str, torch.Tensor] = {}
        for name in task.state_fields:
            self._views[name] = wp.to_torch(getattr(d, name))  # (N, *field_shape) float32
        self._low = torch.as_tensor(self.action_low, device=dev)
        self._high = torch.as_tensor(self.action_high, device=dev)

        self._shared_schedule = schedule
        self._schedule = schedule
        self._obs = torch.zeros((n, self.obs_dim), dtype=torch.float32, device=dev)
        self._position = torch.zeros(
            (n, task.position(self._state()).shape[1]), dtype=torch.float64, device=dev
        )
        self._returns = torch.zeros(n, dtype=torch.float64, device=dev)
        self._lengths = torch.zeros(n, dtype=torch.int64, device=dev)
        self._episode_index = np.full(n, -1, np.int64)
        self._episode_seed = np.zeros(n, np.int64)
        self._active = np.zeros(n, bool)
        self._active_t = torch.zeros(n, dtype=torch.bool, device=dev)
        self._active_ids: np.ndarray | None = None  # None: every slot is active
        self._needs_reset = True
        self._closed = False

    # ------------------------------------------------------------------ protocol (numpy)
    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start episodes in every slot: ``obs (N, obs_dim) float32`` and ``info`` (numpy).

        ``info``: ``"episode_index"``, ``"episode_seed"`` ``(N,) int64``, ``"active" (N,) bool``.
        With a shared schedule the episodes continue its numbering and ``seed`` must be None.
        """
        obs, info = self.reset_torch(seed)
        return _to_numpy(obs), {k: _to_numpy(v) for k, v in info.items()}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One env-step of every slot; see :meth:`BatchedEnv.step` (numpy in, numpy out).

        Args:
            actions: ``(N, act_dim)`` numpy array, array-like or torch tensor (any device).

        Returns:
            ``obs (N, obs_dim) float32``, ``reward (N,) float64``, ``terminated (N,) bool``,
            ``truncated (N,) bool``, ``info`` (numpy arrays: ``final_obs``, ``episode_return``,
            ``episode_length``, ``episode_index``, ``episode_seed``, ``unstable``, ``active``).

        Raises:
            ActionError: wrong shape, or NaN/inf in an active slot's row.
            CapacityError: MuJoCo Warp's contact or constraint buffers overflowed.
        """
        out = self.step_torch(actions)
        obs, reward, terminated, truncated = (_to_numpy(x) for x in out[:4])
        return obs, reward, terminated, truncated, {k: _to_numpy(v) for k, v in out[4].items()}

    # ------------------------------------------------------------------ protocol (torch)
    def reset_torch(self, seed: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """As :meth:`reset`, with every output a tensor on :attr:`device` (obs float32)."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed: make a new env")
        if self._shared_schedule is not None:
            if seed is not None:
                raise ValueError("this env shares an episode schedule: reset it without a seed")
        else:
            if seed is not None:
                self.seed = int(seed)
            self._schedule = EpisodeSchedule(self.seed)
        with self._on_stream():
            self._returns.zero_()
            self._lengths.zero_()
            self._active[:] = True
            self._active_t.fill_(True)
            self._active_ids = None
            self._start_episodes(np.arange(self.num_envs))
            self._needs_reset = False
            info = {
                "episode_index": self._host_to_device(self._episode_index),
                "episode_seed": self._host_to_device(self._episode_seed),
                "active": self._active_t.clone(),
            }
            obs = self._obs.clone()
        return self._hand_over(obs, info)

    def step_torch(
        self, actions: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """As :meth:`step`, with every output a tensor on :attr:`device`.

        Returns:
            ``obs (N, obs_dim) float32``, ``reward (N,) float64``, ``terminated``/``truncated``
            ``(N,) bool`` and ``info`` with ``final_obs (N, obs_dim) float32``,
            ``episode_return (N,) float64``, ``episode_length``/``episode_index``/
            ``episode_seed (N,) int64``, ``unstable``/``active (N,) bool`` (all on the device).
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        with self._on_stream():
            a = self._check_actions(actions)
            self._ctrl.copy_(a)
            self._physics()
            outputs = self._finish(a)
        return self._hand_over(*outputs)  # outside: the caller's stream waits for Warp's

    def set_state(
        self, qpos: Any, qvel: Any, slots: Any = None, position: Any = None
    ) -> torch.Tensor:
        """Put worlds ``slots`` in state ``qpos``/``qvel`` mid-episode (as ``MujocoEnv.set_state``).

        Runs ``mj_forward``; ``cfrc_ext`` is cleared as after a reset. Episode counters are
        unchanged. Useful to start from recorded states, and to compare one step of physics with
        another simulator.

        Args:
            qpos: ``(k, nq)``, qvel: ``(k, nv)``; numpy or torch, cast to float32 on the device.
            slots: ``(k,)`` slot indices (default: all N slots, ``k = N``).
            position: ``(k, p)`` the reference of the next step's velocity, ``task.position`` of
                the state before it (default: of the new state). A gymnasium env mid-episode
                holds the previous step's body positions, which for RK4 models are those of the
                last Runge-Kutta stage, not of its ``qpos``: to reproduce its next reward for a
                task whose position is a body's (Ant), pass ``task.position`` of its MjData.

        Returns:
            ``(k, obs_dim) float32`` observations of the new states (also what a step that ends
            an episode in those slots would report as its last observation).
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before set_state()")
        ids = torch.arange(self.num_envs) if slots is None else torch.as_tensor(slots).reshape(-1)
        ids = ids.to(device=self.device, dtype=torch.int64)
        qpos = torch.as_tensor(qpos).to(device=self.device, dtype=torch.float32)
        qvel = torch.as_tensor(qvel).to(device=self.device, dtype=torch.float32)
        k, model = ids.shape[0], self._model
        if qpos.shape != (k, model.nq) or qvel.shape != (k, model.nv):
            raise ValueError(
                f"set_state needs qpos ({k}, {model.nq}) and qvel ({k}, {model.nv}) for {k} "
                f"slot(s), got {tuple(qpos.shape)} and {tuple(qvel.shape)}"
            )
        if k and (int(ids.min()) < 0 or int(ids.max()) >= self.num_envs):
            raise ValueError(f"slots must be in [0, {self.num_envs}), got {ids.tolist()}")
        with self._on_stream():
            self._qpos[ids] = qpos
            self._qvel[ids] = qvel
            with wp.ScopedDevice(self._wp_device):
                mjw.forward(self._m, self._d)
            if self.task.needs_rne_post:
                self._views["cfrc_ext"][ids] = 0.0
            s = {key: v[ids] for key, v in self._state().items()}
            if position is None:
                self._position[ids] = self.task.position(s)
            else:
                ref = torch.as_tensor(position).to(device=self.device, dtype=torch.float64)
                if ref.shape != (k, self._position.shape[1]):
                    raise ValueError(
                        f"position must be ({k}, {self._position.shape[1]}), got {tuple(ref.shape)}"
                    )
                self._position[ids] = ref
            self._obs[ids] = self.task.observation(s).to(torch.float32)
            obs = self._obs[ids]
        return self._hand_over(obs)[0]

    @property
    def active(self) -> np.ndarray:
        """``(N,) bool``: slots that still run an episode (all, unless a schedule limit hit)."""
        return self._active.copy()

    def close(self) -> None:
        """Free the device buffers and the captured graph; the env cannot be used afterwards."""
        self._graph = None
        self._closed = self._needs_reset = True
        self._views, self._m, self._d = {}, None, None
        self._qpos = self._qvel = self._qacc = self._ctrl = self._overflow = self._mask_t = None

    def __enter__(self) -> GpuBatchedEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"GpuBatchedEnv({self.env_id!r}, num_envs={self.num_envs}, seed={self.seed}, "
            f"device={str(self.device)!r})"
        )

    # ------------------------------------------------------------------ internals
    def _on_stream(self) -> contextlib.AbstractContextManager:
        """Run torch work on Warp's stream, ordered after the caller's current stream."""
        if self._torch_stream is None:
            return contextlib.nullcontext()
        self._torch_stream.wait_stream(torch.cuda.current_stream(self.device))
        return torch.cuda.stream(self._torch_stream)

    def _hand_over(self, *outputs: Any) -> Any:
        """Make the caller's stream wait for Warp's before it reads ``outputs`` (CUDA only)."""
        if self._torch_stream is not None:
            caller = torch.cuda.current_stream(self.device)
            caller.wait_stream(self._torch_stream)
            for x in outputs:
                for t in x.values() if isinstance(x, dict) else (x,):
                    t.record_stream(caller)
        return outputs

    def _host_to_device(self, x: np.ndarray) -> torch.Tensor:
        """A copy of ``x`` on the device (never aliasing host state, also on the CPU)."""
        return torch.tensor(x, device=self.device)

    def _state(self) -> dict[str, torch.Tensor]:
        """The task's state mapping: the device fields as float64 tensors."""
        return {k: v.to(torch.float64) for k, v in self._views.items()}

    def _check_actions(self, actions: Any) -> torch.Tensor:
        """``(N, act_dim) float32`` tensor on the device, clipped; inactive rows zero."""
        if isinstance(actions, torch.Tensor):
            if actions.shape != (self.num_envs, self.act_dim):
                raise ActionError(
                    f"actions must have shape ({self.num_envs}, {self.act_dim}), got "
                    f"{tuple(actions.shape)}; a policy's output for obs (N, obs_dim) must be "
                    "(N, act_dim)"
                )
            if actions.is_complex() or actions.dtype == torch.bool:
                raise ActionError(f"actions must be a real tensor, got dtype {actions.dtype}")
            a = actions.detach().to(device=self.device, dtype=torch.float32)
            finite = torch.isfinite(a).all(dim=1) | ~self._active_t
            if not bool(finite.all()):
                bad = int(torch.nonzero(~finite)[0, 0])
                raise ActionError(
                    f"actions contain NaN or inf (slot {bad}: {a[bad].tolist()}); "
                    "check the policy's inputs and weights"
                )
            a = torch.minimum(torch.maximum(a, self._low), self._high)
        else:
            a = self._host_to_device(
                check_actions(
                    actions, self.num_envs, self.action_low, self.action_high, self._active_ids
                )
            )
        if self._active_ids is not None:
            a = torch.where(self._active_t[:, None], a, torch.zeros_like(a))
        return a

    def _physics_launches(self) -> None:
        for _ in range(self.task.frame_skip):
            mjw.step(self._m, self._d)
        if self.task.needs_rne_post:
            mjw.rne_postconstraint(self._m, self._d)  # gymnasium's cfrc_ext after a step

    def _physics(self) -> None:
        """One env-step of every world: eager launches, or the captured graph on CUDA."""
        with wp.ScopedDevice(self._wp_device):
            if not self._use_graph:
                self._physics_launches()
                return
            if self._graph is None:
                # the first env-step runs eagerly (compiles and loads every module), then the
                # same launches are recorded once (not run); replays reuse the same buffers
                self._physics_launches()
                try:
                    with wp.ScopedCapture(device=self._wp_device, stream=self._stream) as capture:
                        self._physics_launches()
                except Exception as exc:  # e.g. no CUDA mempool for MuJoCo Warp's temporaries
                    warnings.warn(
                        f"CUDA graph capture failed ({exc}); the gpu backend steps with eager "
                        "kernel launches (slower, same results)",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    self._use_graph = False
                    return
                self._graph = capture.graph
                return
            wp.capture_launch(self._graph, stream=self._stream)

    def _finish(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        task, active = self.task, self._active_t
        s = self._state()
        position = task.position(s)
        velocity = (position - self._position) / self._dt
        obs = task.observation(s).to(torch.float32)
        reward = task.reward(s, actions, velocity).to(torch.float64)
        terminated = task.terminated(s).to(torch.bool)
        unstable = (
            ~(self._qpos.abs() <= MJ_MAXVAL).all(dim=1)  # NaN fails <= as well
            | ~(self._qvel.abs() <= MJ_MAXVAL).all(dim=1)
            | ~(self._qacc.abs() <= MJ_MAXVAL).all(dim=1)
            | ~torch.isfinite(obs).all(dim=1)
            | ~torch.isfinite(reward)
        )
        # inactive slots: frozen observation, no reward, never done
        frozen = unstable | ~active
        reward = torch.where(frozen, torch.zeros_like(reward), reward)
        terminated = terminated & ~frozen
        obs = torch.where(frozen[:, None], self._obs, obs)
        unstable_active = unstable & active
        self._position = torch.where(active[:, None], position, self._position)
        self._obs = obs
        self._returns += reward
        self._lengths += active.to(torch.int64)
        final_obs = obs.clone()
        episode_return = self._returns.clone()
        episode_length = self._lengths.clone()
        truncated = ((self._lengths >= task.max_episode_steps) | unstable) & active
        done = terminated | truncated
        # one transfer to the host: which slots end, which idle worlds went unstable, overflow
        flags = torch.stack([done, unstable & ~active, (self._overflow != 0)]).cpu().numpy()
        if flags[2].any():
            raise CapacityError(
                f"MuJoCo Warp overflowed its contact/constraint buffers in "
                f"{int(flags[2].sum())} world(s) (nconmax={self.nconmax}, njmax={self.njmax} per "
                "world): pass larger nconmax= / njmax= to GpuBatchedEnv"
            )
        done_slots = np.flatnonzero(flags[0])
        idle_unstable = np.flatnonzero(flags[1])
        if done_slots.size or idle_unstable.size:
            self._start_episodes(done_slots, idle_unstable)
        info = {
            "final_obs": final_obs,
            "episode_return": episode_return,
            "episode_length": episode_length,
            "episode_index": self._host_to_device(self._episode_index),
            "episode_seed": self._host_to_device(self._episode_seed),
            "unstable": unstable_active,
            "active": active.clone(),
        }
        return self._obs.clone(), reward, terminated, truncated, info

    def _start_episodes(self, slots: np.ndarray, idle: np.ndarray | None = None) -> None:
        """Reset ``slots`` (sorted) to the schedule's next episodes; the rest go inactive.

        As gymnasium's reset: ``mj_resetData``, set ``qpos``/``qvel``, ``mj_forward``. ``idle``:
        inactive worlds to put back at the model's initial state (they went unstable).
        """
        indices, seeds = self._schedule.start(len(slots))
        started, stopped = slots[: len(indices)], slots[len(indices) :]
        if stopped.size:
            self._active[stopped] = False
            self._active_t[self._host_to_device(stopped)] = False
            self._active_ids = np.flatnonzero(self._active).astype(np.int64)
        reset_ids = np.concatenate([started, stopped, [] if idle is None else idle])
        if not reset_ids.size:
            return
        rows = self._host_to_device(reset_ids.astype(np.int64))
        self._mask_t.zero_()
        self._mask_t[rows] = True
        with wp.ScopedDevice(self._wp_device):
            mjw.reset_data(self._m, self._d, reset=self._reset_mask)
            if started.size:
                qpos, qvel = self.task.initial_states(seeds)
                ids = self._host_to_device(started.astype(np.int64))
                self._qpos[ids] = torch.from_numpy(qpos).to(self.device, torch.float32)
                self._qvel[ids] = torch.from_numpy(qvel).to(self.device, torch.float32)
            mjw.forward(self._m, self._d)  # all worlds: recomputes what the next step recomputes
        if self.task.needs_rne_post:
            self._views["cfrc_ext"][rows] = 0.0  # mj_forward does not compute it
        if not started.size:
            return
        ids = self._host_to_device(started.astype(np.int64))
        s = {k: v[ids] for k, v in self._state().items()}
        self._position[ids] = self.task.position(s)
        self._obs[ids] = self.task.observation(s).to(torch.float32)
        self._returns[ids] = 0.0
        self._lengths[ids] = 0
        self._episode_index[started] = indices
        self._episode_seed[started] = seeds


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()
