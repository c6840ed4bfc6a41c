"""A request rate limit per API key, counted in Redis so every web process shares it.

Fixed windows as ``RATE_LIMIT`` states them (``600/minute``, ``10/second;600/minute``,
parsed by the ``limits`` package): one counter per key and window in the ledger's Redis
(``{ns}limits:<bucket>:<limit>``, on a cluster in the home shard's slot), counted and
checked by one script call on the ledger's own client (:data:`_COUNT`: INCR, the
window's EXPIRE when it starts, the first limit used up with its time left), before a
``/v1`` view runs and after authentication (the bucket is the caller's key). Calls that
need no key (health, metrics, signed inbound hooks) are not counted and cost nothing
here. flask-limiter did the same count with a request's worth of its own machinery
around it, on a client of its own: about 0.45 ms a ``/v1`` call on this machine, 0.1 ms
on every other one.

Above a limit the call answers 429 (``service/errors.py``) with ``Retry-After``: the
seconds until that window ends. :meth:`RateLimit.guard` counts one view's refusals
only (the dashboard's sign-in form counts wrong keys per client address).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import flask
from limits import parse, parse_many
from redis.commands.core import Script
from werkzeug.exceptions import TooManyRequests

from .auth import needs_key, rate_limit_key
from .config import Settings
from .extensions import current

__all__ = ["RateLimit", "init_app"]

EXTENSION = "switchyard_limiter"

# KEYS: a counter per limit; ARGV: per limit its amount and its window in seconds
# -> {0, 0}, or {the first limit used up (from 1), the milliseconds left in its window}
_COUNT = """
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[2 * i]) end
  if n > tonumber(ARGV[2 * i - 1]) then
    return {i, math.max(1, redis.call('PTTL', key))}
  end
end
return {0, 0}
"""


class RateLimit:
    """The shared counters: ``check`` for every ``/v1`` call, ``guard`` for one view."""

    def __init__(self, settings: Settings, enabled: bool = True):
        self.prefix = f"{settings.adapter.home_namespace}limits:"
        self.limits = parse_many(settings.rate_limit)
        self.enabled = enabled
        self._count = Script(None, _COUNT.encode())  # run on the ledger's client of the moment

    def _key(self, bucket: str, item) -> str:
        return f"{self.prefix}{bucket}:{item.amount}/{item.multiples}/{item.GRANULARITY.name}"

    def _hit(self, bucket: str, items) -> None:
        """Count a call in each of ``items``' windows; 429 if one of them is used up."""
        used_up, left_ms = self._count(
            keys=[self._key(bucket, i) for i in items],
            args=[n for i in items for n in (i.amount, i.get_expiry())],
            client=current().adapter.redis)
        if int(used_up):
            self._refuse(items[int(used_up) - 1], int(left_ms))

    @staticmethod
    def _refuse(item, left_ms: int) -> None:
        flask.g.retry_after = max(1, math.ceil(left_ms / 1000))
        raise TooManyRequests(f"the rate limit of {item} is used up; try again in "
                              f"{flask.g.retry_after} s")

    def check(self) -> None:
        """Before each request: count a ``/v1`` call against its key's limits."""
        if not self.enabled or not needs_key(flask.request.path):
            return
        self._hit(rate_limit_key(), self.limits)

    def guard(self, view: Callable, limit: str, key: Callable[[], str],
              counts: Callable[[flask.Response], bool], methods: frozenset[str]) -> Callable:
        """``view``, refused (429) once ``limit`` answers of it that ``counts`` came
        from one ``key`` in its window; only its ``methods`` are counted and refused."""
        item = parse(limit)

        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if not self.enabled or flask.request.method not in methods:
                return view(*args, **kwargs)
            counter = self._key(key(), item)
            redis = current().adapter.redis
            if int(redis.get(counter) or 0) >= item.amount:
                self._refuse(item, max(1, redis.pttl(counter)))
            response = flask.current_app.make_response(view(*args, **kwargs))
            if counts(response):
                try:
                    self._hit(key(), [item])
                except TooManyRequests:
                    pass  # this answer stands; the next one is refused
            return response

        return guarded


def init_app(app: flask.Flask, settings: Settings) -> RateLimit:
    """One shared bucket per API key over every ``/v1`` route; 429 above ``RATE_LIMIT``."""
    limiter = RateLimit(settings, enabled=app.config.get("RATELIMIT_ENABLED", True))
    app.before_request(limiter.check)
    app.extensions[EXTENSION] = limiter
    return limiter
