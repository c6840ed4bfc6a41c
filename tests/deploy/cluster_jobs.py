"""The jobs ``test_cluster.py`` runs: none touches Redis itself (the conformance jobs
record what they did in ``REDIS_URL``, which is a cluster's URL there)."""

from adapters import job


class Transient(Exception):
    """Retried."""


@job("c.echo")
def echo(ctx, **payload):
    return payload


@job("c.flaky", max_retries=2, retry_on=(Transient,), retry_backoff=0.2)
def flaky(ctx):
    """Fails its first attempt, succeeds on the retry."""
    if ctx.attempt == 1:
        raise Transient("first attempt fails on purpose")
    return ctx.attempt


@job("c.boom")
def boom(ctx):
    raise RuntimeError("boom")


@job("c.rated", rate_limit="50/s")
def rated(ctx, i):
    return i
