"""What views reach: the one Services object the app was created over, and the web side's own state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app

if TYPE_CHECKING:
    from ..services import Services


@dataclass(frozen=True)
class WebState:
    admin_token: str
    streams: Any  # events.Streams
    logins: Any  # throttle.LoginThrottle


def services() -> Services:
    return current_app.extensions["provision"]


def web() -> WebState:
    return current_app.extensions["provision.web"]
