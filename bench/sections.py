"""Generated sections of BENCHMARKS.md that other benches own.

``make bench`` writes the whole file (:mod:`bench.report`); a bench of its own (e.g.
``make bench-dashboard``) writes one section between two markers,

    <!-- bench:NAME begin -->  ...  <!-- bench:NAME end -->

so a re-run of either replaces only its own text: :func:`replace` puts a section in,
:func:`carry` keeps every marked section of the old file in a freshly written one.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["replace", "carry"]

_SECTION = re.compile(r"<!-- bench:([a-z0-9-]+) begin -->\n.*?<!-- bench:\1 end -->\n?",
                      re.S)


def _block(name: str, text: str) -> str:
    return f"<!-- bench:{name} begin -->\n{text.rstrip()}\n<!-- bench:{name} end -->\n"


def replace(path: Path, name: str, text: str) -> None:
    """Write ``text`` as section ``name`` of ``path``: in place of the old one, else at
    the end."""
    old = path.read_text() if path.exists() else ""
    block = _block(name, text)
    for match in _SECTION.finditer(old):
        if match.group(1) == name:
            path.write_text(old[:match.start()] + block + old[match.end():])
            return
    path.write_text(old.rstrip("\n") + ("\n\n" if old.strip() else "") + block)


def carry(old: str, new: str) -> str:
    """``new`` with the marked sections of ``old`` it lacks added at its end."""
    have = {m.group(1) for m in _SECTION.finditer(new)}
    kept = [m.group(0) for m in _SECTION.finditer(old) if m.group(1) not in have]
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n".join(k.rstrip("\n") + "\n" for k in kept)
