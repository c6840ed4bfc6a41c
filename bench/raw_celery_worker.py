"""The raw Celery worker's app: ``celery -A bench.raw_celery_worker worker``."""

import os

from bench.raw_celery import make_app

app = make_app(os.environ["REDIS_URL"], results=os.environ.get("BENCH_CELERY_RESULTS", "1") == "1")
