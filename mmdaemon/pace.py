"""Replay pacing options, read by the config and the replay shell alike: the speed factor
and which of a frame's times the replay clock follows (see :mod:`mmdaemon.feed.replay`)."""

from __future__ import annotations

from typing import Literal

ReplayClock = Literal["receive", "exchange"]


def parse_speed(text: str) -> float | None:
    """``"max"`` -> None; a positive number -> that factor. Raises ValueError otherwise."""
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"speed must be a positive number or 'max', got {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed must be a positive number or 'max', got {text!r}")
    return speed
