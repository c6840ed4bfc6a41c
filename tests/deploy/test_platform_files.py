"""app.json and .python-version say what the Procfile and setup.cfg say."""

from __future__ import annotations

import json
import re

from honcho.environ import parse_procfile

from tests.harness import ROOT


def test_app_json_runs_every_procfile_process_on_heroku_redis():
    app = json.loads((ROOT / "app.json").read_text())
    processes = parse_procfile((ROOT / "Procfile").read_text()).processes
    assert set(app["formation"]) == set(processes) == {"web", "worker", "scheduler"}
    assert all(f["quantity"] >= 1 for f in app["formation"].values())
    assert [a["plan"] if isinstance(a, dict) else a for a in app["addons"]] == ["heroku-redis"]
    assert app["env"]["API_KEYS"]["required"] is True
    assert app["env"]["QUEUE_BACKEND"]["value"] == "rq"


def test_python_version_names_a_minor_version_setup_cfg_allows():
    # a minor version only: the buildpack then takes its latest patch release
    wanted = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", wanted), wanted
    assert "python_requires = >=3.11" in (ROOT / "setup.cfg").read_text()
    assert tuple(map(int, wanted.split("."))) >= (3, 11)
