"""The HTTP API: one flask-smorest blueprint per resource, errors as problem+json."""

from __future__ import annotations

import http

import flask
import flask_smorest
from flask_smorest.utils import prepare_response

from .. import errors
from ..json_body import LimitedParser
from ..schemas import ProblemSchema

__all__ = ["Api", "Blueprint", "Resource", "init_app", "SPEC_DEFAULTS"]

SPEC_DEFAULTS = {
    "API_TITLE": "Switchyard",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
    "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True, "tryItOutEnabled": True},
    "API_SPEC_OPTIONS": {
        "info": {"description": "Background jobs on Celery or RQ behind one REST API. Every "
                                "/v1 call needs `Authorization: Bearer <api key>`; errors are "
                                "application/problem+json (RFC 9457)."},
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
    },
}

_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer realm", "schema": {"type": "string"}}},
    405: {"Allow": {"description": "the methods the resource accepts",
                    "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds until the key's window resets",
                          "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "seconds to wait before trying again",
                          "schema": {"type": "integer"}}},
}


class Api(flask_smorest.Api):
    """flask-smorest's Api whose error responses are documented and sent as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self):
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            if status in _HEADERS:
                response["headers"] = _HEADERS[status]
            prepare_response(response, self.spec, errors.PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, errors.PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def handle_http_exception(self, error):
        return errors.handle_http_exception(error)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint whose JSON bodies are read within the JSON limits, and
    whose arguments' schemas are made once: given a class, webargs makes an instance of
    it for every request (marshmallow deep-copies its declared fields each time, some
    0.1 ms a request here); an instance is reused, as marshmallow allows."""

    ARGUMENTS_PARSER = LimitedParser()

    def arguments(self, schema, *args, **kwargs):
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)


class Resource:
    """One kind of resource (a job, a workflow, a schedule): the path of one of them and
    the spec of the ``Location`` header that carries it."""

    def __init__(self, endpoint: str, key: str, noun: str):
        self.endpoint, self.key = endpoint, key
        self.location = {"Location": {"description": f"the {noun}'s URL",
                                      "schema": {"type": "string"}}}
        """``headers=`` of a response that points at the new resource."""

    def url(self, value: str) -> str:
        """The resource's path (relative, so it is right behind any proxy)."""
        return flask.url_for(self.endpoint, **{self.key: value})


def problems(blp: flask_smorest.Blueprint, *codes: int):
    """Document the error answers a route can give (each a problem+json response)."""
    def decorate(func):
        for code in codes:
            func = blp.alt_response(code, response=http.HTTPStatus(code).name)(func)
        return func
    return decorate


def init_app(app: flask.Flask) -> Api:
    """Create the Api, register every resource's blueprint and the docs' static files."""
    from . import audit, docs, health, hooks, jobs, queues, reports, schedules, stats, workflows

    api = Api(app)
    app.url_map.converters["job_id"] = jobs.JobIdConverter
    api.register_converter(jobs.JobIdConverter, lambda converter: {"type": "string"})
    queues.register_converter(app, api)
    api.register_blueprint(jobs.blp)
    jobs.document_job_types(api, app.extensions["switchyard"].settings.adapter.max_timeout)
    api.register_blueprint(workflows.blp)
    workflows.document_workflows(api)
    api.register_blueprint(schedules.blp)
    schedules.document_schedules(api, app.extensions["switchyard"].settings.adapter.max_timeout)
    api.register_blueprint(queues.blp)
    api.register_blueprint(audit.blp)
    api.register_blueprint(reports.blp)
    api.register_blueprint(stats.blp)
    api.register_blueprint(hooks.blp)
    api.register_blueprint(health.blp)
    app.register_blueprint(docs.bp)
    return api
