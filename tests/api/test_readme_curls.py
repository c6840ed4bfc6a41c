"""Every safe ``curl`` in README.md, run against a real ``make run``."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
from urllib.parse import urlsplit

from service.embedded_redis import free_port
from tests.api.test_devrun import Devrun, devrun_env, wait_for_banner_key, wait_until_up
from tests.harness import ROOT, wait_until

ID_PLACEHOLDERS = ("<id from above>", "<job id>", "<id>", "219098191f134902accc6c527b7cb95e")


def readme_curls() -> list[tuple[str, set[int]]]:
    """Each curl of a README code block, with the statuses the prose after it names."""
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.finditer(r"```[a-z]*\n(.*?)```\n(.*?)(?=```|\n#)", text, re.S):
        code, prose = block.group(1).replace("\\\n", " "), block.group(2)
        # a status is a three-digit number on its own, not part of an address like 127.0.0.1
        documented = {int(n) for n in re.findall(r"(?<![\d.])([1-5]\d\d)(?![\d.])", prose)}
        lines = code.splitlines()
        for at, line in enumerate(lines):
            if not line.strip().startswith("curl "):
                continue
            command = line.strip()
            # a -d body may span lines inside its quotes: take lines until they close
            for more in lines[at + 1:]:
                try:
                    shlex.split(command, comments=True)
                    break
                except ValueError:
                    command += "\n" + more
            found.append((command, documented))
    return found


def parse(command: str) -> dict:
    """The method, URL, headers and body of a curl command line."""
    words = shlex.split(command, comments=True)[1:]
    out = {"method": None, "url": None, "headers": {}, "body": None}
    it = iter(words)
    for word in it:
        if word == "-X":
            out["method"] = next(it)
        elif word == "-H":
            name, _, value = next(it).partition(":")
            out["headers"][name.strip()] = value.strip()
        elif word in ("-d", "--data"):
            out["body"] = next(it)
        elif word == "-o":
            next(it)  # where curl would save the body: not needed here
        elif word.startswith("http"):
            out["url"] = word
    out["method"] = out["method"] or ("POST" if out["body"] is not None else "GET")
    return out


def test_readme_curls_are_found():
    curls = readme_curls()
    assert len(curls) >= 15 and any("/v1/schedules" in c for c, _ in curls)


def test_every_safe_readme_curl_answers_2xx_or_what_the_readme_documents(tmp_path):
    port = free_port()
    devrun = Devrun(devrun_env(port), tmp_path / "devrun.log")
    try:
        api_key = wait_for_banner_key(devrun, port)
        last = {"jobs": None, "workflows": None}
        ran = []
        for command, documented in readme_curls():
            if "..." in command or "/v1/hooks/" in command:
                continue  # a placeholder key, or a hook that needs a signature of its own
            command = command.replace("$KEY", api_key)
            kind = "workflows" if "/v1/workflows/" in command else "jobs"
            if any(p in command for p in ID_PLACEHOLDERS):
                if last[kind] is None:
                    continue
                for placeholder in ID_PLACEHOLDERS:
                    command = command.replace(placeholder, last[kind])
            request = parse(command)
            url = urlsplit(request["url"])
            target = url.path + (f"?{url.query}" if url.query else "")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(request["method"], target, body=request["body"],
                         headers=request["headers"])
            response = conn.getresponse()
            data = response.read()
            status = response.status
            assert 200 <= status < 300 or status in documented, (command, status, data[:500])
            ran.append((request["method"], url.path, status))
            if request["method"] == "POST" and status == 202 and url.path in (
                    "/v1/jobs", "/v1/workflows"):
                last[url.path.rsplit("/", 1)[1]] = json.loads(data)["id"]
        assert len(ran) >= 15, ran
        wait_until_up(devrun, port, api_key)
        os.kill(devrun.proc.pid, signal.SIGINT)
        assert devrun.proc.wait(90) == 0, devrun.output()[-4000:]
    finally:
        devrun.close()
