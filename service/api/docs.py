"""Swagger UI's own files, served from the installed package so /docs works offline."""

from __future__ import annotations

import flask
from swagger_ui_bundle import swagger_ui_path

__all__ = ["bp"]

bp = flask.Blueprint("docs_assets", __name__, static_folder=str(swagger_ui_path),
                     static_url_path="/docs/assets")
