"""The Flask app factory (flaskr's pattern): resources attach once per process with init_app."""

from __future__ import annotations

import logging

from flask import Flask

from searchjobs import defaults
from searchjobs.config import Settings
from searchjobs.db import engine as db_engine
from searchjobs.runtime import Runtime
from searchjobs.runtime import install as install_runtime
from searchjobs.web import api, errors, events, health, limits, media, openapi, pages, security, webhooks
from searchjobs.web import metrics as web_metrics
from searchjobs.web import runtime as web_runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    if settings is None and runtime is None:  # a real deployment (gunicorn): no placeholder secret
        settings = Settings.for_process()
        settings.check_secret()
    settings = settings or runtime.settings
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=defaults.MAX_CONTENT_LENGTH,
        JSON_SORT_KEYS=False,
    )
    rt = runtime or Runtime.from_settings(settings, pre_ping=True, statement_deadline=db_engine.STATEMENT_DEADLINE)
    install_runtime(rt)
    web_runtime.init_app(app, rt)
    errors.init_app(app)
    security.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(web_metrics.bp)
    app.register_blueprint(openapi.bp)
    limits.init_app(app)  # after the blueprints: its before_request runs after theirs (metrics timer)
    return app
