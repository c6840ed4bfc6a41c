"""The raw Dramatiq worker's broker: ``dramatiq bench.raw_dramatiq_worker:broker``."""

import os

from bench.raw_dramatiq import make_app

broker, actors = make_app(os.environ["REDIS_URL"])
