"""Access to the services wired by create_app, for views."""

from __future__ import annotations

from flask import current_app


def svc(name: str):
    return current_app.extensions["provision"][name]
