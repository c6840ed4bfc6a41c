"""``python -m tests.conformance [--engine pkg.mod:Engine] [pytest options]``: the
conformance suite as installed with the package, from any directory.

It runs pytest on this package's directory with the installed tree as pytest's root, so
the suite's own ``tests/conftest.py`` (the legs, ``--engine``, the private Redis) is
loaded wherever the command is started; ``pytest --pyargs tests.conformance`` alone would
not load it, and would not know ``--engine``. Any pytest option may follow
(``-k``, ``-x``, ``--junitxml=...``); ``SWITCHYARD_LEGS`` chooses the legs as in the
repository (``SWITCHYARD_LEGS=custom`` runs the ``--engine`` leg alone).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def argv(extra: list[str]) -> list[str]:
    """pytest's arguments for a run of this suite with ``extra`` after them."""
    args = ["--rootdir", str(HERE.parent.parent), "-p", "no:cacheprovider", "-ra"]
    if importlib.util.find_spec("pytest_timeout") and not any(a.startswith("--timeout") for a in extra):
        args += ["--timeout=180", "-o", "timeout_func_only=true"]
    return args + [str(HERE), *extra]


def main(extra: list[str] | None = None) -> int:
    return int(pytest.main(argv(sys.argv[1:] if extra is None else extra)))


if __name__ == "__main__":
    sys.exit(main())
