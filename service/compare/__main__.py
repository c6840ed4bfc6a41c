"""``python -m service.compare``: the same as ``flask --app wsgi compare``, without the app."""

from .cli import compare_command

compare_command(prog_name="python -m service.compare")
