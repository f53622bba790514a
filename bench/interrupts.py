"""Interrupts of a benchmark: SIGTERM is handled like Ctrl-C (the run in progress is abandoned)."""

from __future__ import annotations

__all__ = ["Terminated", "signal_name"]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (the run in progress is abandoned), exit 143."""


def signal_name(exc: BaseException) -> str:
    """``"SIGTERM"`` for :class:`Terminated`, else ``"SIGINT"`` (Ctrl-C)."""
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
