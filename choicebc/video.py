"""Record one evaluation episode of a policy as a GIF or MP4 (offscreen MuJoCo rendering).

Rendering uses gymnasium's own env with ``render_mode="rgb_array"``, so the frames show exactly
the task the batched simulator reproduces. Headless machines need an offscreen OpenGL platform:
when ``MUJOCO_GL`` is unset and there is no ``DISPLAY``, EGL is tried, then OSMesa. Where none
works, :class:`VideoUnavailableError` says so and what to install; ``choicebc evaluate --video``
then prints that message and still reports the evaluation.

GIFs are written with Pillow (a matplotlib dependency, always present); MP4 needs the optional
``imageio-ffmpeg`` package (``pip install choicebc[video]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from choicebc.atomic import atomic_path

VIDEO_SUFFIXES = (".gif", ".mp4")
TRACKED_TASKS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer")
"""Tasks that run off the default camera's view: the recording follows their root body."""
GL_PLATFORMS = ("egl", "osmesa")


class VideoUnavailableError(RuntimeError):
    """No offscreen OpenGL platform (or no MP4 encoder) on this machine."""


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"video path {path} must end in one of {VIDEO_SUFFIXES}")
    if not path.parent.exists():
        raise ValueError(f"folder {path.parent} does not exist: create it first")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"folder {path.parent} is not writable: choose another --video path")
    return path


def _make_render_env(env_id: str, width: int, height: int):
    """gymnasium env rendering to arrays, trying the offscreen GL platforms in turn."""
    import gymnasium as gym

    import choicebc.envs  # noqa: F401  (registers our own tasks with gymnasium)

    if os.environ.get("MUJOCO_GL") or os.environ.get("DISPLAY"):
        platforms: tuple[str | None, ...] = (None,)  # the user's choice, as gymnasium does it
    else:
        platforms = GL_PLATFORMS
    errors = []
    for platform in platforms:
        if platform is not None:
            os.environ["MUJOCO_GL"] = platform
        env = gym.make(env_id, render_mode="rgb_array", width=width, height=height)
        try:
            env.reset(seed=0)
            env.render()
            return env
        except Exception as exc:  # noqa: BLE001  (any GL failure means: try the next platform)
            errors.append(f"{platform or os.environ.get('MUJOCO_GL', 'default')}: {exc}")
            env.close()
            if platform is not None:
                del os.environ["MUJOCO_GL"]
    raise VideoUnavailableError(
        "no offscreen OpenGL platform works here (" + "; ".join(errors) + "). Install EGL "
        "(Debian: libegl1 libgl1-mesa-dri) or OSMesa (libosmesa6), or set MUJOCO_GL."
    )


def _write_frames(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """Frames ``(H, W, 3) uint8`` to ``path``, via a temp file renamed into place."""
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            from PIL import Image

            images = [Image.fromarray(frame) for frame in frames]
            images[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=images[1:],
                duration=max(int(round(1000 / fps)), 20),
                loop=0,
            )
        else:
            try:
                import imageio.v2 as imageio
            except ImportError as exc:
                raise VideoUnavailableError(
                    "MP4 needs imageio-ffmpeg: pip install 'choicebc[video]', or use a .gif path"
                ) from exc
            with imageio.get_writer(tmp, fps=fps, format="FFMPEG", codec="libx264") as writer:
                for frame in frames:
                    writer.append_data(frame)


def _frame(env, track: bool) -> np.ndarray:
    """The current frame ``(H, W, 3) uint8``, a copy (gymnasium reuses its buffer).

    gymnasium resets its free camera's type on every render, so following the root body is
    done by moving the camera's look-at point to it before each frame.
    """
    if track:
        viewer = env.unwrapped.mujoco_renderer.viewer  # exists after the first render
        viewer.cam.lookat[:2] = env.unwrapped.data.xpos[1][:2]
    return np.array(env.render(), dtype=np.uint8)


def record_episode(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    path: str | Path,
    seed: int = 0,
    max_steps: int = 1000,
    width: int = 320,
    height: int = 240,
    every: int = 2,
) -> dict[str, float]:
    """Roll ``policy`` out for one episode of ``env_id`` and write its frames to ``path``.

    Args:
        policy: batched ``obs (N, obs_dim) float32 -> actions (N, act_dim)`` callable (a
            ``BCPolicy``'s ``act``, an expert), called with ``N = 1``.
        env_id: gymnasium id of the task.
        path: ``.gif`` or ``.mp4`` output; replaced atomically.
        seed: the episode's reset seed.
        max_steps: cap on env-steps (the task's own time limit applies too).
        width, height: frame size in pixels.
        every: keep one frame in ``every`` (the GIF plays at the task's real speed).

    Returns:
        ``{"return": ..., "length": ..., "frames": ...}`` of the recorded episode.

    Raises:
        ValueError: bad path or arguments.
        VideoUnavailableError: no offscreen GL platform or no MP4 encoder.
    """
    path = _check_path(path)
    if max_steps < 1 or every < 1 or width < 16 or height < 16:
        raise ValueError("max_steps and every must be >= 1, width and height >= 16 pixels")
    env = _make_render_env(env_id, width, height)
    try:
        track = env_id.split("-")[0] in TRACKED_TASKS
        obs, _ = env.reset(seed=seed)
        frames = [_frame(env, track)]
        total, length, done = 0.0, 0, False
        while not done and length < max_steps:
            action = np.asarray(policy(np.asarray(obs, np.float32)[None]))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            if length % every == 0 or done:
                frames.append(_frame(env, track))
        fps = env.metadata.get("render_fps", 30) / every
    finally:
        env.close()
    _write_frames(frames, path, fps)
    return {"return": total, "length": float(length), "frames": float(len(frames))}
