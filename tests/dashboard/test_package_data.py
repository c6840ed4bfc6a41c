"""Every template and static file of the dashboard is package data, so a built wheel
(and a deploy from it) has them: setup.cfg's globs must cover each file there is."""

from __future__ import annotations

import configparser
import fnmatch

from tests.processes import ROOT


def test_setup_cfg_ships_every_dashboard_file():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    globs = [g.strip() for g in config["options.package_data"]["service"].splitlines()
             if g.strip()]
    base = ROOT / "service"
    files = [p.relative_to(base).as_posix()
             for folder in ("dashboard/templates", "dashboard/static")
             for p in (base / folder).rglob("*") if p.is_file()]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, g) and
                                           f.count("/") == g.count("/") for g in globs)]
    assert not missing, f"add to [options.package_data] service: {missing}"
