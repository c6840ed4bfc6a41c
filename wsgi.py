"""What gunicorn and ``flask --app wsgi`` load: ``app = create_app()``."""

import sys

from adapters import ConfigurationError
from service import create_app

try:
    app = create_app()
except ConfigurationError as exc:
    if "keys" in sys.argv[1:] and "flask" in sys.argv[0]:
        from service.cli import keys_only_app

        app = keys_only_app()
    else:
        print(f"switchyard: configuration error: {exc}", file=sys.stderr, flush=True)
        # 3 is also what gunicorn's arbiter reads as "worker failed to boot": it stops
        # instead of booting the same broken worker again and again.
        sys.exit(3)
