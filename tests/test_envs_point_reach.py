"""choicebc/PointReach-v0: a 2-D task whose analytic expert reaches the goal reliably."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from choicebc.envs import POINT_REACH_ID, PointReachExpert, get_task

from choicebc.evaluation import evaluate


def test_gymnasium_env_runs_and_observes_the_position():
    env = gym.make(POINT_REACH_ID)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,) and np.all(np.abs(obs) <= 0.9)
    np.testing.assert_array_equal(obs, env.unwrapped.data.qpos)
    obs2, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
    assert obs2[0] > obs[0]  # commanded +x velocity moves the point along +x
    assert reward == pytest.approx(-info["distance"])
    assert not truncated
    env.close()


def test_expert_reaches_the_goal_from_every_start():
    task = get_task(POINT_REACH_ID)
    result = evaluate(PointReachExpert(), POINT_REACH_ID, episodes=64, num_envs=16, seed=3)
    # every episode terminates at the goal, well before the 200-step time limit
    assert result.lengths.max() < 80
    assert not result.unstable.any()
    # and the final positions are within the success radius: replay one episode to check
    env = gym.make(POINT_REACH_ID)
    obs, _ = env.reset(seed=int(result.seeds[0]))
    expert = PointReachExpert()
    for _ in range(int(result.lengths[0])):
        obs, _, terminated, truncated, info = env.step(expert(obs[None])[0])
    assert terminated and info["distance"] < task.success_radius
    env.close()


def test_expert_beats_random_actions_by_far():
    rng = np.random.default_rng(0)

    def random_policy(obs):
        return rng.uniform(-1, 1, (len(obs), 2))

    expert = evaluate(PointReachExpert(), POINT_REACH_ID, episodes=32, num_envs=32, seed=0)
    rand = evaluate(random_policy, POINT_REACH_ID, episodes=32, num_envs=32, seed=0)
    assert expert.mean_return > rand.mean_return + 50
    assert rand.mean_length > 3 * expert.mean_length


def test_expert_input_checks():
    with pytest.raises(ValueError, match="gain must be positive"):
        PointReachExpert(gain=0.0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        PointReachExpert()(np.zeros((4, 3)))


@pytest.mark.parametrize("env_id", ["choicebc/PointReach-v0", "choicebc/PointReachDiscrete-v0"])
def test_the_custom_tasks_pass_gymnasiums_env_checker(env_id):
    """gymnasium's own checker: spaces, seeding determinism, reset/step signatures, dtypes."""
    import warnings

    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(env_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checker warning is a failure here, but for
            # unbounded observations, which the limited slide joints can exceed softly (as
            # gymnasium's own MuJoCo tasks, whose observation boxes are unbounded too)
            warnings.filterwarnings("ignore", message=".*observation space (min|max)imum value")
            check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
