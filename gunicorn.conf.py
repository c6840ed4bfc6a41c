"""gunicorn's settings for the web process; gunicorn reads ./gunicorn.conf.py by default.

gunicorn answers some requests itself, before the app sees them: a request line
over 4094 bytes (414), a header over 8190 bytes or more than 100 of them (431), a
malformed request line or header (400), an unknown transfer coding (501). Its own
answers are HTML; here every one of them is the service's problem+json instead.
Nothing else is set: settings stay gunicorn's defaults, the command line's and
``GUNICORN_CMD_ARGS``.
"""

import json

from gunicorn import util

from service.errors import PROBLEM_JSON, problem_body

if not callable(getattr(util, "write_error", None)):
    # gunicorn's workers send their own error answers through util.write_error; a
    # gunicorn without it would answer in HTML again, so say so rather than start
    raise RuntimeError("this gunicorn has no gunicorn.util.write_error; gunicorn.conf.py "
                       "cannot make its error answers problem+json")


def write_problem(sock, status_int, reason, mesg):
    """gunicorn's own error answer, as application/problem+json."""
    body = json.dumps(problem_body(status_int, mesg or reason, title=reason)).encode("ascii")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = write_problem
