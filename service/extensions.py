"""The service's per-app state: its validated settings and its one queue adapter."""

from __future__ import annotations

import dataclasses

import flask

from adapters import Switchyard as Client

from .config import Settings

__all__ = ["Switchyard", "current"]


@dataclasses.dataclass
class Switchyard:
    """What every view needs; kept in ``app.extensions["switchyard"]``."""

    settings: Settings
    adapter: Client


def current() -> Switchyard:
    """The running app's Switchyard state."""
    return flask.current_app.extensions["switchyard"]
