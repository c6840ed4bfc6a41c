"""The ledger's Lua scripts, one file each in ``adapters/lua/``.

Each script is run as: the constants it shares with Python, generated from
``adapters/record.py`` (the field lists returned by position, the duration buckets),
then ``common.lua`` (the helpers every script uses), then the script's own file.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from . import record

__all__ = ["NAMES", "constants", "source"]

NAMES = ("create", "delete", "purge", "claim", "finish", "cancel", "heartbeat", "progress",
         "redeliver", "maintain", "failure_groups", "minutes", "unpark", "worker_beat", "watch")
"""Every script of the ledger (``adapters/lua/<name>.lua``)."""


def _lua_string(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.+]+", text):
        raise ValueError(f"{text!r} cannot be spelled as a plain Lua string")
    return f"'{text}'"


def constants() -> str:
    """The Lua that defines ``CLAIM_FIELDS``, ``DISPATCH_FIELDS`` and ``BUCKETS``."""
    def names(fields):
        return "{" + ", ".join(_lua_string(f) for f in fields) + "}"
    buckets = ", ".join(f"{{{float(b)!r}, {_lua_string(b)}}}" for b in record.DURATION_BUCKETS)
    return ("-- generated from adapters/record.py when the script is loaded\n"
            f"local CLAIM_FIELDS = {names(record.CLAIM_FIELDS)}\n"
            f"local DISPATCH_FIELDS = {names(record.DISPATCH_FIELDS)}\n"
            f"local BUCKETS = {{{buckets}}}\n")


@functools.cache
def source(name: str) -> str:
    """The whole text of script ``name``, as Redis runs it."""
    if name not in NAMES:
        raise KeyError(f"no ledger script {name!r}")
    folder = resources.files(__package__).joinpath("lua")
    return (constants() + folder.joinpath("common.lua").read_text(encoding="utf-8")
            + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8"))
