"""requirements.txt, the lock the platforms' Python buildpacks install, matches setup.cfg.

Resolving again would need the package index and take seconds; instead the lock is
read as it stands: every runtime dependency of setup.cfg must be pinned there within
its range (and nothing be pinned on setup.cfg's behalf that it no longer asks for),
every pin must carry hashes, and the header must name the command that refreshes it.
"""

from __future__ import annotations

import configparser
import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness import ROOT

REFRESH = "make lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def install_requires() -> list[Requirement]:
    """The runtime dependencies setup.cfg declares."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return [Requirement(line) for line in cfg["options"]["install_requires"].splitlines()
            if line.strip()]


def pins() -> dict[str, dict]:
    """Each pinned package of requirements.txt: its version, hashes and who asked for it."""
    found: dict[str, dict] = {}
    current = None
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = found.setdefault(canonicalize_name(match[1]),
                                       {"version": match[2], "hashes": [], "via": []})
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current["hashes"].append(line.strip())
        elif current is not None and line.strip().startswith("#"):
            current["via"].append(line.strip().lstrip("#").strip().removeprefix("via ").strip())
        elif line.strip() and not line.startswith("#"):
            raise AssertionError(f"requirements.txt: a line that is no pin, hash or comment: {line!r}")
    return found


def test_every_runtime_dependency_is_pinned_within_its_range():
    locked = pins()
    for requirement in install_requires():
        pin = locked.get(canonicalize_name(requirement.name))
        assert pin, f"{requirement.name} is in setup.cfg but not in requirements.txt: run {REFRESH}"
        assert requirement.specifier.contains(pin["version"], prereleases=True), (
            f"requirements.txt pins {requirement.name}=={pin['version']}, outside setup.cfg's "
            f"{requirement}: run {REFRESH}")
        for extra in requirement.extras:  # celery[redis]: what the extra adds is locked too
            for dep in map(Requirement, metadata.requires(requirement.name) or []):
                if dep.marker is not None and dep.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(dep.name) in locked, (
                        f"{dep.name} ({requirement}) is not in requirements.txt: run {REFRESH}")


def test_nothing_is_pinned_for_a_dependency_setup_cfg_dropped():
    wanted = {canonicalize_name(r.name) for r in install_requires()}
    direct = {name for name, pin in pins().items()
              if any(via.startswith("switchyard") for via in pin["via"])}
    assert direct == wanted, (f"requirements.txt and setup.cfg disagree on {sorted(direct ^ wanted)}: "
                              f"run {REFRESH}")


def test_every_pin_has_hashes_so_pip_checks_what_it_installs():
    unhashed = [name for name, pin in pins().items() if not pin["hashes"]]
    assert not unhashed, f"pins without --hash: {unhashed}"


def test_the_header_names_the_command_that_refreshes_it():
    head = (ROOT / "requirements.txt").read_text().splitlines()[:3]
    assert f"#    {REFRESH}" in head, head
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lock:", makefile, re.M), "the Makefile has no lock target"
    assert "--generate-hashes" in makefile


def test_the_project_itself_is_not_in_the_lock():
    # the buildpack runs the Procfile from the checkout: the app's packages are imported
    # from there, and an installed copy would shadow an edited one
    assert "switchyard" not in pins()
    assert not any(line.lstrip().startswith(("-e", ".")) for line in
                   (ROOT / "requirements.txt").read_text().splitlines())
