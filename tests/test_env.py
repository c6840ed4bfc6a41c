"""The one environment reader both settings modules use: typed values, one-line errors
that name the variable and never show a URL's password."""

from __future__ import annotations

import pytest

from adapters import AdapterSettings, ConfigurationError
from adapters.env import Env, redact_url


def refusal(read, *args) -> str:
    with pytest.raises(ConfigurationError) as info:
        read(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unset_and_empty_mean_the_default():
    env = Env({"EMPTY": ""})
    assert env.raw("EMPTY") is None and env.raw("UNSET") is None
    assert env.text("EMPTY", "d") == "d" and env.integer("EMPTY", 7) == 7
    assert env.number("UNSET", 0.5) == 0.5 and env.boolean("UNSET", True) is True
    assert env.items("UNSET", "a, b") == ["a", "b"]
    assert env.url("UNSET", None, ("redis",), "redis://") is None


def test_numbers():
    env = Env({"N": "2.5", "W": "3600.0", "BIG": "99", "NAN": "nan", "INF": "inf", "X": "x"})
    assert env.number("N", 0) == 2.5 and env.integer("W", 0) == 3600
    assert refusal(env.integer, "N", 0) == "N='2.5' is not a whole number"
    assert refusal(env.number, "X", 0) == "X='x' is not a number"
    assert refusal(env.number, "NAN", 0) == "NAN='nan' is not a number"
    assert refusal(env.number, "INF", 0) == "INF='inf' is not a number"
    assert refusal(env.integer, "BIG", 0, 1, 10) == "BIG='99' must be between 1 and 10"
    assert refusal(env.number, "N", 0, 3) == "N='2.5' must be at least 3"


def test_booleans_and_lists():
    env = Env({"ON": "Yes", "OFF": "0", "BAD": "maybe", "L": " a, ,b ,"})
    assert env.boolean("ON", False) is True and env.boolean("OFF", True) is False
    assert refusal(env.boolean, "BAD", False).startswith("BAD='maybe' is not 1 or 0")
    assert env.items("L") == ["a", "b"]


def test_urls_are_checked_and_their_passwords_never_shown():
    env = Env({"U": "redis://:s3cret@h:port/0", "S": "http://u:s3cret@h", "H": "redis:///0",
               "OK": "redis://:s3cret@h:6380/1"})
    assert env.url("OK", None, ("redis",), "redis://").port == 6380
    for name, problem in (("U", "cannot be parsed: it has a port that is not a number"),
                          ("S", "is not a redis:// URL"), ("H", "names no host")):
        message = refusal(env.url, name, None, ("redis",), "redis://")
        assert message.startswith(f"{name}=") and problem in message
        assert "s3cret" not in message
    assert redact_url("rediss://user:s3cret@h:6380/0") == "rediss://user:***@h:6380/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize("env, message", [
    ({"REDIS_URL": "redis://:s3cret@h:6379/zero"},
     "REDIS_URL='redis://:***@h:6379/zero': the database after the '/' must be a number"),
    ({"REDIS_URL": "redis://"}, "REDIS_URL='redis://' names no host"),
    ({"SWITCHYARD_QUEUE_EXPIRES": "soon"}, "SWITCHYARD_QUEUE_EXPIRES='soon' is not a whole number"),
    ({"SWITCHYARD_SCHEDULER_POLL": "often"}, "SWITCHYARD_SCHEDULER_POLL='often' is not a number"),
    ({"SWITCHYARD_SCHEDULE_CATCH_UP": "-1"}, "SWITCHYARD_SCHEDULE_CATCH_UP='-1' must be at least 0"),
])
def test_adapter_settings_refuse_what_the_service_refuses(env, message):
    assert refusal(AdapterSettings.from_env, env) == message


def test_scheduler_settings_come_from_the_environment():
    settings = AdapterSettings.from_env({"SWITCHYARD_SCHEDULER_POLL": "0.5",
                                         "SWITCHYARD_SCHEDULE_CATCH_UP": "0"})
    assert (settings.scheduler_poll, settings.schedule_catch_up) == (0.5, 0)
    assert (AdapterSettings.from_env({}).scheduler_poll,
            AdapterSettings.from_env({}).schedule_catch_up) == (1.0, 1)
