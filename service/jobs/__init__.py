"""The service's job types: importing this package registers every one of them.

Add a module here and one import line below; nothing else needs to know.
"""

from . import demo  # noqa: F401
from . import email  # noqa: F401
from . import reports  # noqa: F401
from . import webhooks  # noqa: F401
