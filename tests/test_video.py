"""``choicebc.video``: one episode to a GIF, offscreen; clear errors where it cannot be done."""

from __future__ import annotations

import numpy as np
import pytest

from choicebc import video
from choicebc.video import VideoUnavailableError, record_episode


def zero_policy(obs: np.ndarray) -> np.ndarray:
    return np.zeros((len(obs), 6), np.float32)


def test_gif_has_one_frame_per_kept_step_and_the_camera_follows(tmp_path, monkeypatch):
    from PIL import Image, ImageSequence

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    path = tmp_path / "clip.gif"
    try:
        clip = record_episode(zero_policy, "HalfCheetah-v5", path, seed=3, max_steps=12, every=3)
    except VideoUnavailableError as exc:
        pytest.skip(f"no offscreen GL here: {exc}")
    assert clip["length"] == 12 and clip["frames"] == 5  # reset frame + steps 3, 6, 9, 12
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))]
    assert frames[0].shape == (240, 320, 3)
    assert frames[0].std() > 10  # a rendered scene, not a blank buffer
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed into place


def test_bad_paths_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must end in"):
        record_episode(zero_policy, "HalfCheetah-v5", tmp_path / "clip.avi")
    with pytest.raises(ValueError, match="does not exist"):
        record_episode(zero_policy, "HalfCheetah-v5", tmp_path / "missing" / "clip.gif")


def test_no_gl_platform_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(video, "GL_PLATFORMS", ("no-such-gl",))
    with pytest.raises(VideoUnavailableError, match="no offscreen OpenGL platform"):
        record_episode(zero_policy, "HalfCheetah-v5", tmp_path / "clip.gif", max_steps=2)
    assert not (tmp_path / "clip.gif").exists()
    import os

    assert "MUJOCO_GL" not in os.environ  # the failed attempt leaves the environment as it was
