"""The one reader of environment variables, for the adapters' settings and the service's.

``Env(mapping)`` reads typed values (``text``, ``integer``, ``number``, ``boolean``,
``items``, ``url``); every problem is a ``ConfigurationError`` whose
one-line message names the variable (and never shows a URL's password). An unset
variable and an empty one both mean "use the default".
"""

from __future__ import annotations

import math
import os
from typing import Mapping
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigurationError

__all__ = ["Env", "parse_bool", "redact_url"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(raw: str, what: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); ``what`` names it in the error."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{what}={raw!r} is not 1 or 0 (true/false, yes/no, on/off)")


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: safe for a log or an error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return url.replace(parts.netloc, f"{name}:***@{host}", 1)


def _bounds(minimum: float, maximum: float) -> str:
    if maximum == math.inf:
        return f"at least {minimum:g}"
    if minimum == -math.inf:
        return f"at most {maximum:g}"
    return f"between {minimum:g} and {maximum:g}"


class Env:
    """Typed, validated reads of one environment (``os.environ`` unless given)."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = os.environ if env is None else env

    def raw(self, name: str) -> str | None:
        """The variable's value, or ``None`` when it is unset or empty."""
        value = self.env.get(name)
        return value if value else None

    def text(self, name: str, default: str = "") -> str:
        return self.raw(name) or default

    def number(self, name: str, default: float, minimum: float = -math.inf,
               maximum: float = math.inf) -> float:
        """A finite number within ``[minimum, maximum]``."""
        return self._numeric(name, default, minimum, maximum, whole=False)

    def integer(self, name: str, default: int, minimum: float = -math.inf,
                maximum: float = math.inf) -> int:
        """A whole number within ``[minimum, maximum]`` (``3600.0`` counts as one)."""
        return self._numeric(name, default, minimum, maximum, whole=True)

    def _numeric(self, name: str, default, minimum: float, maximum: float, whole: bool):
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (whole and not value.is_integer()):
            raise ConfigurationError(f"{name}={raw!r} is not a {'whole ' if whole else ''}number")
        if not minimum <= value <= maximum:
            raise ConfigurationError(f"{name}={raw!r} must be {_bounds(minimum, maximum)}")
        return int(value) if whole else value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        return default if raw is None else parse_bool(raw, name)

    def items(self, name: str, default: str = "") -> list[str]:
        """A comma-separated list: items stripped, empty ones dropped."""
        return [item.strip() for item in self.text(name, default).split(",") if item.strip()]

    def url(self, name: str, default: str | None, schemes: tuple[str, ...], kind: str,
            host: bool = True) -> SplitResult | None:
        """A URL whose scheme is one of ``schemes`` (``kind`` says which in the error),
        whose port is a number and which names a host (unless ``host`` is false or the
        scheme is ``unix``). ``None`` when unset and ``default`` is ``None``."""
        value = self.raw(name) or default
        if value is None:
            return None
        shown = redact_url(value)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError as exc:
            problem = ("it has a port that is not a number" if "could not be cast" in str(exc)
                       else str(exc))
            raise ConfigurationError(f"{name}={shown!r} cannot be parsed: {problem}") from None
        if parts.scheme not in schemes:
            raise ConfigurationError(f"{name}={shown!r} is not a {kind} URL")
        if host and parts.scheme != "unix" and not parts.hostname:
            raise ConfigurationError(f"{name}={shown!r} names no host")
        return parts
