"""Backend comparison bench: Switchyard on Celery and RQ beside the raw engines.

``python -m bench`` (``make bench``) measures worker throughput, enqueue rate, latency,
Redis commands per job and worker memory on a private redis-server, and writes
``BENCHMARKS.md`` and a chart; ``python -m bench --smoke`` is the quick CI version.
"""
