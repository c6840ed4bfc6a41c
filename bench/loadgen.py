"""A small HTTP load generator: threads in one process POST the same body over and over.

    python -m bench.loadgen http://127.0.0.1:PORT/v1/jobs --key KEY --body '{...}'
        --requests 500 --threads 4 --start-at UNIX_TIME

Prints one JSON line: when it started and ended (wall clock, so several processes can
be combined), how many answers were 2xx, and a count of every status seen.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--key", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args(argv)

    url = urlsplit(args.url)
    body = args.body.encode()
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()
    remaining = [args.requests]

    def take() -> bool:
        with lock:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
            return True

    def client() -> None:
        conn = None
        while take():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
                conn.request("POST", url.path, body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                statuses[str(status)] += 1
        if conn is not None:
            conn.close()

    time.sleep(max(0.0, args.start_at - time.time()))
    started = time.time()
    threads = [threading.Thread(target=client) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = time.time()
    ok = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
    json.dump({"started": started, "ended": ended, "ok": ok, "statuses": dict(statuses)},
              sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
