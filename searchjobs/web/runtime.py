"""The process-wide Runtime, attached to the Flask app once (flaskr's init_app pattern)."""

from __future__ import annotations

from flask import Flask, current_app

from searchjobs.runtime import Runtime

EXTENSION = "searchjobs"


def init_app(app: Flask, rt: Runtime) -> None:
    app.extensions[EXTENSION] = rt


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]
