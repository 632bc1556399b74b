"""Bad command-line input, and the checks of it that several commands share."""

from __future__ import annotations

from pathlib import Path


class UsageError(Exception):
    """Bad command-line input: the message is printed and the exit status is 2."""


def speed_and_recordings(command: str, recordings: list[str], speed_text: str) -> float | None:
    """``--speed`` as a factor (None: max), once every recording is known to exist."""
    from mmdaemon.pace import parse_speed

    try:
        speed = parse_speed(speed_text)
    except ValueError as exc:
        raise UsageError(f"mmdaemon {command}: --speed: {exc}") from None
    missing = [p for p in recordings if not Path(p).is_file()]
    if missing:
        raise UsageError(f"mmdaemon {command}: no such recording: {missing[0]}")
    return speed
