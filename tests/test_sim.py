"""BatchedEnv protocol on the cpu backend: bad input, auto-reset, seeds, instability, async."""

from __future__ import annotations

import numpy as np
import pytest

from choicebc.sim import (
    ActionError,
    BackendUnavailableError,
    BatchedEnv,
    EpisodeSchedule,
    UnknownEnvError,
    cuda_available,
    episode_seed,
    make_batched,
)
from choicebc.sim.cpu import CpuBatchedEnv


@pytest.fixture
def hopper():
    env = make_batched("Hopper-v5", 3, backend="cpu", seed=4)
    env.reset()
    yield env
    env.close()


def test_make_batched_builds_protocol_envs():
    for backend in ("cpu", "gym"):
        env = make_batched("Swimmer-v5", 2, backend=backend, seed=0)
        assert isinstance(env, BatchedEnv)
        assert (env.num_envs, env.obs_dim, env.act_dim) == (2, 8, 2)
        obs, info = env.reset()
        assert obs.shape == (2, 8) and obs.dtype == np.float32
        assert info["episode_index"].tolist() == [0, 1]
        env.close()
    if not cuda_available():
        assert type(make_batched("Swimmer-v5", 1, backend="auto")).__name__ == "CpuBatchedEnv"


def test_unknown_env_id_lists_the_known_ones():
    with pytest.raises(UnknownEnvError, match="Known ids: HalfCheetah-v5, Hopper-v5"):
        make_batched("Humanoid-v5", 4, backend="cpu")


@pytest.mark.parametrize("num_envs", [0, -3, 2.5, True, "8"])
def test_num_envs_must_be_a_positive_integer(num_envs):
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        make_batched("Hopper-v5", num_envs, backend="cpu")


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="auto, cpu, gpu, gym"):
        make_batched("Hopper-v5", 2, backend="tpu")


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
def test_gpu_backend_without_gpu_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="needs a CUDA device.*backend='cpu'"):
        make_batched("Hopper-v5", 2, backend="gpu")


@pytest.mark.parametrize("shape", [(3, 4), (3,), (2, 3), (3, 3, 1)])
def test_actions_of_the_wrong_shape_are_rejected(hopper, shape):
    with pytest.raises(ActionError, match=r"shape \(3, 3\)"):
        hopper.step(np.zeros(shape, np.float32))


def test_nan_actions_are_rejected_naming_the_slot(hopper):
    actions = np.zeros((3, 3), np.float32)
    actions[2, 1] = np.nan
    with pytest.raises(ActionError, match="slot 2"):
        hopper.step(actions)
    with pytest.raises(ActionError, match="numeric"):
        hopper.step([["a", "b", "c"]] * 3)


def test_step_before_reset_is_an_error():
    env = make_batched("Hopper-v5", 2, backend="cpu")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((2, 3), np.float32))


def test_actions_are_clipped_to_the_box():
    outs = []
    for scale in (1.0, 7.0, 3e38):  # 3e38: finite, but the rows' float32 sum overflows
        env = make_batched("Hopper-v5", 2, backend="cpu", seed=1)
        env.reset()
        actions = np.array([[1, -1, 1], [-1, 1, 1]], np.float32) * scale
        outs.append(env.step(actions))
    for out in outs[1:]:
        np.testing.assert_array_equal(outs[0][0], out[0])
        np.testing.assert_array_equal(outs[0][1], out[1])  # control cost of the clipped action


def test_episode_seeds_do_not_depend_on_num_envs():
    small = make_batched("Walker2d-v5", 2, backend="cpu", seed=9)
    large = make_batched("Walker2d-v5", 5, backend="cpu", seed=9)
    obs_s, info_s = small.reset()
    obs_l, info_l = large.reset()
    np.testing.assert_array_equal(obs_s, obs_l[:2])
    assert info_l["episode_seed"].tolist() == [episode_seed(9, j) for j in range(5)]
    assert len(set(info_l["episode_seed"].tolist())) == 5


def test_auto_reset_and_episode_statistics(hopper):
    rng = np.random.default_rng(0)
    returns, lengths = np.zeros(3), np.zeros(3, int)
    next_index = 3
    ended = 0
    for _ in range(120):
        obs, reward, terminated, truncated, info = hopper.step(
            rng.uniform(-1, 1, (3, 3)).astype(np.float32)
        )
        returns += reward
        lengths += 1
        done = terminated | truncated
        # where nothing ended, final_obs is the returned observation
        np.testing.assert_array_equal(info["final_obs"][~done], obs[~done])
        np.testing.assert_allclose(info["episode_return"], returns)
        np.testing.assert_array_equal(info["episode_length"], lengths)
        for slot in np.flatnonzero(done):
            ended += 1
            # the new episode is the next one in start order, with its own seed
            assert info["episode_index"][slot] == next_index
            assert info["episode_seed"][slot] == episode_seed(4, next_index)
            assert not np.array_equal(info["final_obs"][slot], obs[slot])
            next_index += 1
            returns[slot], lengths[slot] = 0.0, 0
    assert ended >= 3
    assert not np.isnan(returns).any()


def test_unstable_simulation_is_reset_and_reported():
    env = CpuBatchedEnv("Hopper-v5", 3, seed=2)
    ref = CpuBatchedEnv("Hopper-v5", 3, seed=2)
    env.reset()
    ref.reset()
    actions = np.zeros((3, 3), np.float32)
    env.step(actions)
    last_obs = ref.step(actions)[0]
    env._qvel[1] = 1e12  # blow slot 1 up: MuJoCo warns and resets the simulation
    obs, reward, terminated, truncated, info = env.step(actions)
    ref_obs = ref.step(actions)[0]
    assert info["unstable"].tolist() == [False, True, False]
    assert truncated[1] and not terminated[1] and reward[1] == 0.0
    assert np.isfinite(obs).all() and np.isfinite(info["final_obs"]).all()
    np.testing.assert_array_equal(info["final_obs"][1], last_obs[1])  # last finite observation
    assert info["episode_index"][1] == 3  # slot 1 moved on to the next episode
    np.testing.assert_array_equal(obs[[0, 2]], ref_obs[[0, 2]])  # the others are untouched
    env._qpos[2] = np.nan  # a NaN state is caught the same way
    obs, reward, _, truncated, info = env.step(actions)
    assert info["unstable"].tolist() == [False, False, True] and truncated[2]
    assert np.isfinite(obs).all() and np.isfinite(reward).all()
    env.step(actions)  # and the simulation goes on normally
    env.close()
    ref.close()


def test_step_async_or_physics_then_wait_equals_step():
    a = CpuBatchedEnv("Ant-v5", 4, seed=0)
    b = CpuBatchedEnv("Ant-v5", 4, seed=0)
    a.reset()
    b.reset()
    rng = np.random.default_rng(0)
    for i in range(20):
        actions = rng.uniform(-1, 1, (4, 8)).astype(np.float32)
        out = a.step(actions)
        if i % 2:
            b.step_async(actions)
        else:
            b.step_physics(actions)  # the same split, the physics on this thread
        with pytest.raises(RuntimeError, match="in flight"):
            b.step(actions)
        ref = b.step_wait()
        for x, y in zip(out[:4], ref[:4], strict=True):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(RuntimeError, match="step_async"):
        b.step_wait()
    a.close()
    b.close()


def test_shared_schedule_with_limit_numbers_episodes_once_and_idles_slots():
    schedule = EpisodeSchedule(env_seed=1, limit=5)
    halves = [CpuBatchedEnv("InvertedDoublePendulum-v5", 2, schedule=schedule) for _ in range(2)]
    started = []
    for half in halves:
        started += half.reset()[1]["episode_index"].tolist()
    assert started == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="without a seed"):
        halves[0].reset(seed=3)
    finished = []
    rng = np.random.default_rng(0)
    for _ in range(200):
        for half in halves:
            running = half._episode_index.copy()
            _, _, terminated, truncated, info = half.step(rng.uniform(-1, 1, (2, 1)))
            finished += running[terminated | truncated].tolist()
    assert sorted(finished) == [0, 1, 2, 3, 4]  # episode 4 ran, nothing beyond the limit
    assert not any(half.active.any() for half in halves)
    assert schedule.remaining == 0


def _finished_episodes(envs, policy, steps):
    """Step each env with ``policy`` until none is active; ``{episode: (return, length)}``."""
    out = {}
    for _ in range(steps):
        for env in envs:
            if env.active.any():
                obs, started = env.observe()
                running = started["episode_index"]
                _, _, terminated, truncated, info = env.step(policy(obs))
                for slot in np.flatnonzero(terminated | truncated):
                    out[int(running[slot])] = (
                        float(info["episode_return"][slot]),
                        int(info["episode_length"][slot]),
                    )
    return out


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Ant-v5"])  # Ant: persistent batch, cfrc_ext
def test_take_episodes_moves_running_episodes_that_continue_bit_identically(env_id):
    def policy(obs):
        return np.tanh(0.3 * obs[:, :1] + 0.1 * np.arange(8)[: env.act_dim]).astype(np.float32)

    env = CpuBatchedEnv(env_id, 6, seed=3, schedule=EpisodeSchedule(3, limit=6))
    env.reset()
    ref = _finished_episodes([env], policy, 1000)
    assert sorted(ref) == list(range(6))

    schedule = EpisodeSchedule(3, limit=6)
    giver, taker = (CpuBatchedEnv(env_id, k, seed=3, schedule=schedule) for k in (5, 3))
    giver.reset()
    taker.reset()  # episode 5 and two idle slots
    assert taker.active.tolist() == [True, False, False]
    _finished_episodes([giver, taker], policy, 7)
    moved_index = giver.observe()[1]["episode_index"][[3, 4]]
    assert taker.take_episodes(giver, 3) == 2  # two free slots take the giver's last two
    assert giver.active.tolist() == [True, True, True, False, False]
    assert taker.active.all()
    assert taker.observe()[1]["episode_index"][1:].tolist() == moved_index.tolist()
    assert taker.take_episodes(giver, 1) == 0  # no free slot left
    got = _finished_episodes([giver, taker], policy, 1000)
    assert sorted(got) == list(range(6))
    for j in range(6):
        assert got[j] == ref[j], f"episode {j} changed by the move"


def test_take_episodes_needs_a_shared_schedule_and_no_step_in_flight():
    schedule = EpisodeSchedule(0, limit=4)
    a, b = (CpuBatchedEnv("Hopper-v5", 2, schedule=schedule) for _ in range(2))
    other = CpuBatchedEnv("Hopper-v5", 2)
    for env in (a, b, other):
        env.reset()
    with pytest.raises(ValueError, match="sharing one schedule"):
        a.take_episodes(other, 1)
    b.step_async(np.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="between steps"):
        a.take_episodes(b, 1)
    b.step_wait()
    assert a.take_episodes(b, 1) == 0  # a has no free slot
