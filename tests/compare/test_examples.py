"""``@job(..., examples=[...])``: each example is checked at registration like a payload."""

from __future__ import annotations

import pytest
from marshmallow import Schema, fields

from adapters import ConfigurationError, definitions, get_definition, job
from adapters.registry import _registry


@pytest.fixture(autouse=True)
def _forget_test_jobs():
    before = set(_registry)
    yield
    for name in set(_registry) - before:
        del _registry[name]


class Payload(Schema):
    to = fields.Email(required=True)
    count = fields.Integer(strict=True)


def test_valid_examples_are_kept_on_the_definition():
    @job("ex.schema", schema=Payload(), examples=[{"to": "a@example.com"},
                                                  {"to": "b@example.com", "count": 2}])
    def with_schema(ctx, to, count=1):
        return to

    @job("ex.signature", examples=[{"n": 1}])
    def with_signature(ctx, n):
        return n

    assert get_definition("ex.schema").examples == ({"to": "a@example.com"},
                                                     {"to": "b@example.com", "count": 2})
    assert get_definition("ex.signature").examples == ({"n": 1},)


def test_an_example_the_schema_refuses_is_a_configuration_error_naming_it():
    with pytest.raises(ConfigurationError, match=r"example 1 .*payload\.count"):
        @job("ex.bad_schema", schema=Payload(), examples=[{"to": "a@example.com"},
                                                          {"to": "a@example.com", "count": "2"}])
        def bad(ctx, to, count=1):
            return to
    assert "ex.bad_schema" not in definitions()


def test_an_example_the_signature_refuses_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="example 0 is not a valid payload"):
        @job("ex.bad_signature", examples=[{"m": 1}])
        def bad(ctx, n):
            return n
    assert "ex.bad_signature" not in definitions()


@pytest.mark.parametrize("examples", [{"n": 1}, "n", [["n", 1]], [None]])
def test_examples_must_be_a_list_of_dicts(examples):
    with pytest.raises(ConfigurationError, match="ex.shape"):
        job("ex.shape", examples=examples)(lambda ctx, n=0: n)


def test_the_service_job_types_have_examples_for_the_default_comparison():
    import service.jobs  # noqa: F401

    assert get_definition("demo.echo").examples
