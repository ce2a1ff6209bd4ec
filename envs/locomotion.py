"""gymnasium's ``*-v5`` MuJoCo tasks with their default settings, as batched state functions.

Each class transcribes one file of ``gymnasium/envs/mujoco/*_v5.py`` (observation, reward terms
in gymnasium's order of operations, termination, reset noise); the model is gymnasium's own XML.
"""

from __future__ import annotations

from collections.abc import Mapping

from .task import Array, MujocoTask, array_namespace, control_cost, gymnasium_asset


class HalfCheetah(MujocoTask):
    """``HalfCheetah-v5``: obs ``qpos[1:], qvel`` (17); reward ``x_vel - 0.1 |a|^2``; no end."""

    env_id = "HalfCheetah-v5"
    xml_path = gymnasium_asset("half_cheetah.xml")
    frame_skip = 5
    reset_noise_scale = 0.1
    qvel_noise = "normal"
    obs_dim = 17

    def observation(self, s: Mapping[str, Array]) -> Array:
        xp = array_namespace(s["qpos"])
        return xp.concatenate([s["qpos"][:, 1:], s["qvel"]], axis=-1)

    def reward(self, s: Mapping[str, Array], action: Array, velocity: Array) -> Array:
        forward_reward = 1.0 * velocity[:, 0]
        return forward_reward - control_cost(0.1, action)


class _Hopping(MujocoTask):
    """Shared by Hopper and Walker2d: obs ``qpos[1:], clip(qvel, -10, 10)``; healthy bonus 1."""

    frame_skip = 4
    reset_noise_scale = 5e-3
    qvel_noise = "uniform"
    ctrl_cost_weight = 1e-3
    healthy_reward = 1.0

    def observation(self, s: Mapping[str, Array]) -> Array:
        xp = array_namespace(s["qpos"])
        return xp.concatenate([s["qpos"][:, 1:], s["qvel"].clip(-10.0, 10.0)], axis=-1)

    def is_healthy(self, s: Mapping[str, Array]) -> Array:
        raise NotImplementedError

    def reward(self, s: Mapping[str, Array], action: Array, velocity: Array) -> Array:
        forward_reward = 1.0 * velocity[:, 0]
        healthy_reward = self.is_healthy(s) * self.healthy_reward
        rewards = forward_reward + healthy_reward
        return rewards - control_cost(self.ctrl_cost_weight, action)

    def terminated(self, s: Mapping[str, Array]) -> Array:
        return ~self.is_healthy(s)


class Hopper(_Hopping):
    """``Hopper-v5`` (obs 11): healthy while ``|qpos[2:], qvel| < 100``, z > 0.7, |angle| < 0.2."""

    env_id = "Hopper-v5"
    xml_path = gymnasium_asset("hopper.xml")
    obs_dim = 11

    def is_healthy(self, s: Mapping[str, Array]) -> Array:
        qpos, qvel = s["qpos"], s["qvel"]
        z, angle = qpos[:, 1], qpos[:, 2]
        healthy_state = ((-100.0 < qpos[:, 2:]) & (qpos[:, 2:] < 100.0)).all(axis=-1) & (
            (-100.0 < qvel) & (qvel < 100.0)
        ).all(axis=-1)
        healthy_z = (0.7 < z) & (z < float("inf"))
        healthy_angle = (-0.2 < angle) & (angle < 0.2)
        return healthy_state & healthy_z & healthy_angle


class Walker2d(_Hopping):
    """``Walker2d-v5`` (obs 17, ``walker2d_v5.xml``): healthy while 0.8 < z < 2, |angle| < 1."""

    env_id = "Walker2d-v5"
    xml_path = gymnasium_asset("walker2d_v5.xml")
    obs_dim = 17

    def is_healthy(self, s: Mapping[str, Array]) -> Array:
        z, angle = s["qpos"][:, 1], s["qpos"][:, 2]
        return (0.8 < z) & (z < 2.0) & (-1.0 < angle) & (angle < 1.0)


class Ant(MujocoTask):
    """``Ant-v5`` (obs 105): ``qpos[2:], qvel, clip(cfrc_ext[1:], -1, 1)``; torso-x velocity.

    Reward ``x_vel + healthy - 0.5 |a|^2 - 5e-4 |clip(cfrc_ext, -1, 1)|^2`` (the contact cost
    includes the world body's row); healthy while the state is finite and ``0.2 <= z <= 1``.
    """

    env_id = "Ant-v5"
    xml_path = gymnasium_asset("ant.xml")
    frame_skip = 5
    reset_noise_scale = 0.1
    qvel_noise = "normal"
    state_fields = ("qpos", "qvel", "xpos", "cfrc_ext")
    needs_rne_post = True
    obs_dim = 105
    main_body = 1  # the torso

    def position(self, s: Mapping[str, Array]) -> Array:
        return s["xpos"][:, self.main_body, :2]

    def observation(self, s: Mapping[str, Array]) -> Array:
        xp = array_namespace(s["qpos"])
        contact = s["cfrc_ext"][:, 1:].clip(-1.0, 1.0)
        return xp.concatenate(
            [s["qpos"][:, 2:], s["qvel"], contact.reshape(contact.shape[0], -1)], axis=-1
        )

    def is_healthy(self, s: Mapping[str, Array]) -> Array:
        xp = array_namespace(s["qpos"])
        finite = xp.isfinite(s["qpos"]).all(axis=-1) & xp.isfinite(s["qvel"]).all(axis=-1)
        z = s["qpos"][:, 2]
        return finite & (0.2 <= z) & (z <= 1.0)

    def reward(self, s: Mapping[str, Array], action: Array, velocity: Array) -> Array:
        forward_reward = velocity[:, 0] * 1.0
        healthy_reward = self.is_healthy(s) * 1.0
        rewards = forward_reward + healthy_reward
        forces = s["cfrc_ext"].clip(-1.0, 1.0)
        contact_cost = 5e-4 * (forces * forces).reshape(forces.shape[0], -1).sum(axis=-1)
        costs = control_cost(0.5, action) + contact_cost
        return rewards - costs

    def terminated(self, s: Mapping[str, Array]) -> Array:
        return ~self.is_healthy(s)


class Swimmer(MujocoTask):
    """``Swimmer-v5`` (obs 8): ``qpos[2:], qvel``; reward ``x_vel - 1e-4 |a|^2``; no end."""

    env_id = "Swimmer-v5"
    xml_path = gymnasium_asset("swimmer.xml")
    frame_skip = 4
    reset_noise_scale = 0.1
    qvel_noise = "uniform"
    obs_dim = 8

    def position(self, s: Mapping[str, Array]) -> Array:
        return s["qpos"][:, 0:2]

    def observation(self, s: Mapping[str, Array]) -> Array:
        xp = array_namespace(s["qpos"])
        return xp.concatenate([s["qpos"][:, 2:], s["qvel"]], axis=-1)

    def reward(self, s: Mapping[str, Array], action: Array, velocity: Array) -> Array:
        forward_reward = 1.0 * velocity[:, 0]
        return forward_reward - control_cost(1e-4, action)


class InvertedDoublePendulum(MujocoTask):
    """``InvertedDoublePendulum-v5`` (obs 9); ends when the tip's height ``y <= 1``.

    Obs ``qpos[:1], sin(qpos[1:]), cos(qpos[1:]), clip(qvel), clip(qfrc_constraint)[:1]``;
    reward ``10 * alive - (0.01 x^2 + (y - 2)^2) - (1e-3 v1^2 + 5e-3 v2^2)`` of the tip site.
    """

    env_id = "InvertedDoublePendulum-v5"
    xml_path = gymnasium_asset("inverted_double_pendulum.xml")
    frame_skip = 5
    reset_noise_scale = 0.1
    qvel_noise = "normal"
    state_fields = ("qpos", "qvel", "site_xpos", "qfrc_constraint")
    obs_dim = 9

    def observation(self, s: Mapping[str, Array]) -> Array:
        xp = array_namespace(s["qpos"])
        qpos = s["qpos"]
        return xp.concatenate(
            [
                qpos[:, :1],
                xp.sin(qpos[:, 1:]),
                xp.cos(qpos[:, 1:]),
                s["qvel"].clip(-10.0, 10.0),
                s["qfrc_constraint"].clip(-10.0, 10.0)[:, :1],
            ],
            axis=-1,
        )

    def terminated(self, s: Mapping[str, Array]) -> Array:
        return s["site_xpos"][:, 0, 2] <= 1.0

    def reward(self, s: Mapping[str, Array], action: Array, velocity: Array) -> Array:
        x, y = s["site_xpos"][:, 0, 0], s["site_xpos"][:, 0, 2]
        v1, v2 = s["qvel"][:, 1], s["qvel"][:, 2]
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        alive_bonus = 10.0 * ~self.terminated(s)
        return alive_bonus - dist_penalty - vel_penalty
