"""The ``gpu`` backend (MuJoCo Warp), run on Warp's CPU device: gymnasium's envs step for step.

MuJoCo Warp simulates in float32 with the solver tolerance raised to 1e-6 (MuJoCo: float64, 1e-8),
so a free-running trajectory leaves gymnasium's as soon as contacts make the dynamics chaotic:
MuJoCo itself, started 1e-6 away in ``qpos``, is O(1) away after ~30 HalfCheetah steps of random
actions. Step-for-step equivalence is therefore tested *state-forced*: before every step the gpu
world is put in gymnasium's exact state (``set_state``), both take the same action, and the
step's observation, reward, termination and truncation must agree; episodes end and auto-reset
on both sides as they go (the time limit is lowered to 80 steps so every task truncates).

Tolerances, from measurement (250 forced steps per task, seed 11, uniform random actions; the
largest one-step difference seen over all steps):
    observation: HalfCheetah 5.9e-4, Walker2d 1.0e-4, Ant 4.0e-5 (steps below), Swimmer 1.1e-5,
    Hopper 3.1e-6, InvertedDoublePendulum 2.3e-6, PointReach 1.3e-7;
    reward: HalfCheetah 1.6e-5, Walker2d 7.0e-6, the others <= 2.1e-6.
``OBS_ATOL = 3e-3`` and ``REWARD_ATOL = 1e-4`` are ~5x the worst of these; a wrong observation
term, reward term, frame skip, integrator stage or reset is off by >= 1e-2.

One known physics difference is excluded rather than tolerated: for a plane-capsule contact where
the capsule is within 30 degrees of the plane normal, MuJoCo Warp 4.0.0 picks a fixed tangent
(y or z) for the friction pyramid while MuJoCo 4.0.0 keeps the capsule axis projected on the plane.
With gymnasium's pyramidal cones friction is anisotropic, so such steps differ by O(1) (Ant's
steep legs). Planar models are unaffected (both tangents give the same pyramid). Ant steps where
a capsule that is nearly steep (projected axis < 0.6) comes within 5 cm of the floor at any
substep start are not compared: the criterion must be conservative, as the axis can cross 0.5
inside a substep's Runge-Kutta stages. That leaves 67 of 200 Ant steps, which must meet the same
tolerance (measured: <= 4e-5).

Runs ~5-8 minutes on 2 CPU cores (Warp's CPU kernels, first compile ~1 min, cached in
``~/.cache/warp``); ``--ignore=tests/test_sim_gpu.py`` skips it locally.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

pytest.importorskip("mujoco_warp", reason="the [gpu] extra (mujoco-warp, warp-lang) is missing")
torch = pytest.importorskip("torch")

from choicebc.envs import get_task, known_env_ids  # noqa: E402

from choicebc.sim import (  # noqa: E402
    ActionError,
    BackendUnavailableError,
    EpisodeSchedule,
    make_batched,
)
from choicebc.sim.gpu import CapacityError, GpuBatchedEnv, contact_capacity  # noqa: E402

OBS_ATOL = 3e-3
REWARD_ATOL = 1e-4
RESET_ATOL = 1e-6  # a reset state is gymnasium's float64 draw rounded to float32
TIME_LIMIT = 80
STEPS = 200

_PLANE, _CAPSULE = int(mujoco.mjtGeom.mjGEOM_PLANE), int(mujoco.mjtGeom.mjGEOM_CAPSULE)


def _pyramid_differs(
    model: mujoco.MjModel, data: mujoco.MjData, near: float = 0.05, steep: float = 0.6
) -> bool:
    """A steep capsule near a plane whose friction pyramid MuJoCo Warp may orient differently.

    Conservative, since only substep starts are seen (not Runge-Kutta stages): a capsule counts
    within ``near`` metres of the plane (beyond the margins) and while its axis projected on the
    plane is shorter than ``steep`` (Warp's fallback threshold is 0.5).
    """
    for plane in np.flatnonzero(model.geom_type == _PLANE):
        normal = data.geom_xmat[plane].reshape(3, 3)[:, 2]
        for cap in np.flatnonzero(model.geom_type == _CAPSULE):
            if not (
                (model.geom_contype[cap] & model.geom_conaffinity[plane])
                or (model.geom_contype[plane] & model.geom_conaffinity[cap])
            ):
                continue
            axis = data.geom_xmat[cap].reshape(3, 3)[:, 2]
            half, radius = model.geom_size[cap][1], model.geom_size[cap][0]
            lowest = min(
                normal @ (data.geom_xpos[cap] + s * half * axis - data.geom_xpos[plane])
                for s in (1.0, -1.0)
            )
            if lowest - radius > model.geom_margin[cap] + model.geom_margin[plane] + near:
                continue
            projected = axis - normal * (axis @ normal)
            norm = np.linalg.norm(projected)
            if norm >= steep or norm < 1e-9:
                continue  # same tangent in both (Warp only falls back below 0.5)
            fallback = np.array([0.0, 1.0, 0.0] if abs(normal[1]) < 0.5 else [0.0, 0.0, 1.0])
            fallback = fallback - normal * (fallback @ normal)
            cos = abs(projected @ fallback) / (norm * np.linalg.norm(fallback))
            if min(cos, np.sqrt(max(0.0, 1.0 - cos * cos))) > 1e-3:
                return True  # neither parallel nor perpendicular: a rotated pyramid
    return False


def _step_touches_pyramid_difference(env: gym.Env, action: np.ndarray) -> bool:
    """Replay the coming env-step substep by substep on a copy of gymnasium's MjData."""
    u = env.unwrapped
    model, shadow = u.model, mujoco.MjData(u.model)
    shadow.qpos[:], shadow.qvel[:] = u.data.qpos, u.data.qvel
    shadow.qacc_warmstart[:], shadow.time = u.data.qacc_warmstart, u.data.time
    shadow.ctrl[:] = action
    for _ in range(u.frame_skip + 1):
        mujoco.mj_forward(model, shadow)
        if _pyramid_differs(model, shadow):
            return True
        mujoco.mj_step(model, shadow)
    return False


@pytest.fixture
def short_episodes(monkeypatch):
    """Lower every task's time limit (restored after the test) so runs cover truncations."""

    def apply(env_id: str) -> int:
        monkeypatch.setattr(get_task(env_id), "max_episode_steps", TIME_LIMIT)
        return TIME_LIMIT

    return apply


@pytest.mark.parametrize("env_id", known_env_ids())
def test_gpu_backend_matches_gymnasium_step_for_step(env_id, short_episodes):
    """Slot 0 vs ``gym.make(env_id)``: same seeds, same state before each step, same actions."""
    limit = short_episodes(env_id)
    env = GpuBatchedEnv(env_id, 2, seed=11, device="cpu")
    ref = gym.make(env_id, max_episode_steps=limit)
    u = ref.unwrapped
    obs, info = env.reset()
    ref_obs, _ = ref.reset(seed=int(info["episode_seed"][0]))
    np.testing.assert_allclose(obs[0], ref_obs, atol=RESET_ATOL, rtol=0)
    rng = np.random.default_rng(3)
    compared = ends = 0
    for _ in range(STEPS):
        actions = rng.uniform(env.action_low, env.action_high, (2, env.act_dim))
        actions = actions.astype(np.float32)
        # gymnasium's velocity reference is its MjData's positions (last RK4 stage for Ant)
        position = env.task.position({f: getattr(u.data, f)[None] for f in env.task.state_fields})
        env.set_state(u.data.qpos[None], u.data.qvel[None], slots=[0], position=position)
        skip = _step_touches_pyramid_difference(ref, actions[0])
        obs, reward, terminated, truncated, info = env.step(actions)
        ref_obs, ref_reward, ref_term, ref_trunc, _ = ref.step(actions[0])
        assert (terminated[0], truncated[0]) == (ref_term, ref_trunc)
        assert not info["unstable"].any()
        assert np.isfinite(obs).all() and obs.dtype == np.float32 and reward.dtype == np.float64
        if not skip:
            compared += 1
            np.testing.assert_allclose(info["final_obs"][0], ref_obs, atol=OBS_ATOL, rtol=0)
            assert reward[0] == pytest.approx(ref_reward, abs=REWARD_ATOL, rel=0)
        if terminated[0] or truncated[0]:
            ends += 1
            ref_obs, _ = ref.reset(seed=int(info["episode_seed"][0]))
            assert info["episode_index"][0] >= 2  # episodes 0 and 1 started at reset
            np.testing.assert_allclose(obs[0], ref_obs, atol=RESET_ATOL, rtol=0)
    assert ends >= 2, "the run must cover episode ends and auto-resets"
    # Ant is the only task with excluded steps (67 of 200 compared); the others: every step
    assert compared >= (50 if env_id == "Ant-v5" else STEPS)
    env.close()
    ref.close()


def test_open_loop_point_reach_follows_cpu_backend_over_episodes():
    """No state forcing: the expert drives 3 slots for 250 steps through successes and resets.

    PointReach is not chaotic (velocity servos, no contacts), so float32 physics stays close to
    the cpu backend's float64 over whole episodes: measured drift <= 3e-7 in positions.
    """
    from choicebc.envs import PointReachExpert

    expert = PointReachExpert()
    gpu = GpuBatchedEnv("choicebc/PointReach-v0", 3, seed=2, device="cpu")
    cpu = make_batched("choicebc/PointReach-v0", 3, backend="cpu", seed=2)
    obs, info = gpu.reset()
    cpu_obs, cpu_info = cpu.reset()
    np.testing.assert_array_equal(info["episode_seed"], cpu_info["episode_seed"])
    terminations = 0
    for _ in range(250):
        out, ref = gpu.step(expert(obs)), cpu.step(expert(cpu_obs))
        obs, cpu_obs = out[0], ref[0]
        np.testing.assert_allclose(out[4]["final_obs"], ref[4]["final_obs"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(out[1], ref[1], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(out[2], ref[2])
        np.testing.assert_array_equal(out[3], ref[3])
        for key in ("episode_length", "episode_index", "episode_seed"):
            np.testing.assert_array_equal(out[4][key], ref[4][key])
        np.testing.assert_allclose(obs, cpu_obs, atol=1e-5, rtol=0)
        terminations += int(out[2].sum())
    assert terminations >= 6  # every slot reached the goal and restarted at least twice
    gpu.close()
    cpu.close()


def test_torch_path_returns_device_tensors_equal_to_numpy_path():
    a = GpuBatchedEnv("HalfCheetah-v5", 3, seed=4, device="cpu")
    b = GpuBatchedEnv("HalfCheetah-v5", 3, seed=4, device="cpu")
    obs_t, info_t = a.reset_torch()
    obs_n, info_n = b.reset()
    assert isinstance(obs_t, torch.Tensor) and obs_t.dtype == torch.float32
    assert obs_t.device == a.device == torch.device("cpu")
    np.testing.assert_array_equal(obs_t.numpy(), obs_n)
    np.testing.assert_array_equal(info_t["episode_seed"].numpy(), info_n["episode_seed"])
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.uniform(-1, 1, (3, 6)).astype(np.float32)
        out_t = a.step_torch(torch.from_numpy(actions))
        out_n = b.step(actions)
        assert out_t[1].dtype == torch.float64 and out_t[2].dtype == torch.bool
        for x, y in zip(out_t[:4], out_n[:4], strict=True):
            np.testing.assert_array_equal(x.numpy(), y)
        assert set(out_t[4]) == set(out_n[4])
        for key, value in out_t[4].items():
            assert isinstance(value, torch.Tensor), key
            np.testing.assert_array_equal(value.numpy(), out_n[4][key])


def test_same_step_autoreset_and_episodes_independent_of_num_envs():
    """Episode j starts from episode_seed(seed, j) whatever N; finished slots restart at once."""
    starts: dict[int, dict[int, np.ndarray]] = {}
    for n in (2, 3):
        env = GpuBatchedEnv("InvertedDoublePendulum-v5", n, seed=7, device="cpu")
        obs, info = env.reset()
        starts[n] = {int(j): obs[i] for i, j in enumerate(info["episode_index"])}
        rng = np.random.default_rng(1)
        for _ in range(40):
            obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, (n, 1)))
            done = terminated | truncated
            for i in np.flatnonzero(done):
                starts[n][int(info["episode_index"][i])] = obs[i]
                assert info["episode_length"][i] >= 1
                assert not np.array_equal(info["final_obs"][i], obs[i])
            np.testing.assert_array_equal(info["final_obs"][~done], obs[~done])
            assert (info["episode_length"][~done] >= 1).all()
        env.close()
    common = sorted(set(starts[2]) & set(starts[3]))
    assert len(common) >= 6, "both runs must start several episodes"
    for j in common:
        np.testing.assert_array_equal(starts[2][j], starts[3][j])


def test_unstable_world_is_reset_and_reported_without_touching_others():
    n = 3
    env = GpuBatchedEnv("Hopper-v5", n, seed=0, device="cpu")
    twin = GpuBatchedEnv("Hopper-v5", n, seed=0, device="cpu")
    env.reset()
    twin.reset()
    zero = np.zeros((n, 3), np.float32)
    env.step(zero)
    twin.step(zero)
    model = env.task.model
    for bad in (np.nan, 1e12):
        qpos = np.array(model.qpos0, dtype=np.float64)[None]
        qvel = np.full((1, model.nv), bad)
        last = env.set_state(qpos, qvel, slots=[1]).numpy()
        obs, reward, terminated, truncated, info = env.step(zero)
        twin_obs, twin_reward, *_ = twin.step(zero)
        assert info["unstable"].tolist() == [False, True, False]
        assert truncated[1] and not terminated[1] and reward[1] == 0.0
        np.testing.assert_array_equal(info["final_obs"][1], last[0])  # last finite observation
        assert np.isfinite(obs).all()
        assert info["episode_length"][1] >= 1
        assert info["episode_index"][1] == info["episode_index"].max()  # a new episode began
        for i in (0, 2):  # the other worlds did not notice
            np.testing.assert_allclose(obs[i], twin_obs[i], atol=1e-6, rtol=0)
            assert reward[i] == pytest.approx(twin_reward[i], abs=1e-6)
    env.close()
    twin.close()


def test_episode_limit_turns_finished_slots_inactive():
    schedule = EpisodeSchedule(3, limit=3)
    env = GpuBatchedEnv("InvertedDoublePendulum-v5", 2, seed=3, device="cpu", schedule=schedule)
    env.reset()
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(200):
        actions = rng.uniform(-1, 1, (2, 1)).astype(np.float32)
        actions[~env.active] = np.nan  # inactive rows are ignored, even NaN
        before = env.active
        obs, reward, terminated, truncated, info = env.step(actions)
        finished += int(((terminated | truncated) & before).sum())
        assert (reward[~before] == 0.0).all() and not (terminated | truncated)[~before].any()
        if not env.active.any():
            break
    assert finished == 3 and schedule.started == 3
    assert not info["active"].any()


def test_bad_inputs_raise_clear_errors():
    env = GpuBatchedEnv("Swimmer-v5", 2, seed=0, device="cpu")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((2, 2)))
    env.reset()
    with pytest.raises(ActionError, match=r"shape \(2, 2\)"):
        env.step(np.zeros((3, 2)))
    with pytest.raises(ActionError, match=r"shape \(2, 2\)"):
        env.step(torch.zeros(2, 3))
    with pytest.raises(ActionError, match="NaN or inf.*slot 1"):
        env.step(np.array([[0, 0], [np.nan, 0]]))
    with pytest.raises(ActionError, match="NaN or inf.*slot 0"):
        env.step(torch.tensor([[np.inf, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="qpos"):
        env.set_state(np.zeros((1, 4)), np.zeros((1, 5)), slots=[0])
    with pytest.raises(ValueError, match="position"):
        env.set_state(np.zeros((1, 5)), np.zeros((1, 5)), slots=[0], position=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="num_envs"):
        GpuBatchedEnv("Swimmer-v5", 0, device="cpu")
    with pytest.raises(ValueError, match="device"):
        GpuBatchedEnv("Swimmer-v5", 1, device="tpu")
    with pytest.raises(ValueError, match="graph"):
        GpuBatchedEnv("Swimmer-v5", 1, device="cpu", graph=True)
    if not torch.cuda.is_available():
        for device in (None, "cuda", "cuda:0"):
            with pytest.raises(BackendUnavailableError, match="device='cpu'"):
                GpuBatchedEnv("Swimmer-v5", 1, device=device)
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_contact_capacity_bounds_and_overflow_raises():
    for env_id in known_env_ids():
        nconmax, njmax = contact_capacity(get_task(env_id).model)
        assert nconmax >= 8 and njmax >= nconmax
    # HalfCheetah falls onto the floor with up to 16 contacts: 1 slot per world must overflow
    env = GpuBatchedEnv("HalfCheetah-v5", 2, seed=0, device="cpu", nconmax=1, njmax=8)
    env.reset()
    with pytest.raises(CapacityError, match="nconmax"):
        for _ in range(100):
            env.step(np.zeros((2, 6), np.float32))
