"""The Flask application factory: the one place the web side is wired."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, has_request_context, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from ..errors import Conflict, InputError, NotFound, ProvisionError
from ..services import Services
from . import (
    api,
    audit,
    auth,
    boot,
    callbacks,
    collect,
    events,
    kickstart,
    openapi,
    ops,
    proxies,
    rebuilds,
    tokens,
    ui,
    vmedia,
)
from .accesslog import loggable_path
from .deps import WebState
from .throttle import LoginThrottle

access_log = logging.getLogger("provision.http")


class _SessionOverTls(SecureCookieSessionInterface):
    """The console's session cookie is Secure when the request came over HTTPS: public_url is
    plain HTTP wherever GRUB fetches by HTTP, while operators reach the console through the TLS
    front (request.is_secure from its X-Forwarded-Proto, trusted_proxies only)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app)) or (has_request_context() and request.is_secure)


def create_app(svc: Services, *, admin_token: str | None = None, secret_key: str | None = None) -> Flask:
    """The app over `svc` (deps.services() in a view). Without a started boot-config refresher
    (tests, no `serve`) every request asks the store and renders once per change."""
    cfg = svc.cfg
    app = Flask(__name__)
    app.session_interface = _SessionOverTls()
    app.wsgi_app = proxies.middleware(app.wsgi_app, cfg.server.trusted_proxies)  # type: ignore[method-assign]
    # a hard bound on any request body; an installer log larger than installer_log_max is still
    # accepted and truncated (callbacks keep its tail), not refused
    app.config.update(SECRET_KEY=secret_key or svc.key, MAX_CONTENT_LENGTH=max(64 << 20, 2 * cfg.defaults.installer_log_max),
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=auth.SESSION_HOURS),
                      SESSION_COOKIE_SECURE=cfg.server.public_url.startswith("https://"))
    app.extensions["provision"] = svc
    app.extensions["provision.web"] = WebState(
        admin_token=admin_token or svc.admin_token(),
        # each event stream holds one of the server's threads: at most half of them, and never the
        # last one (with threads = 1 there are no streams: the boot configs and callbacks need it)
        streams=events.Streams(cfg.server.threads // 2),
        logins=LoginThrottle(cfg.auth.login_attempts, cfg.auth.lockout))
    audit.init(app)
    for bp in (boot.bp, tokens.bp, kickstart.bp, vmedia.bp, callbacks.bp, collect.bp, api.bp, rebuilds.bp, events.bp, openapi.bp,
               ui.bp, ops.bp):
        app.register_blueprint(bp)
    # the console's forms carry a CSRF token bound to the session (no time limit: a run page stays
    # open for hours); the API (bearer token) and the nodes' callbacks are not cookie-authenticated
    app.config.update(WTF_CSRF_TIME_LIMIT=None)
    csrf = CSRFProtect(app)
    for bp in (boot.bp, tokens.bp, kickstart.bp, vmedia.bp, callbacks.bp, collect.bp, api.bp, rebuilds.bp, events.bp, openapi.bp,
               ops.bp):
        csrf.exempt(bp)

    @app.errorhandler(CSRFError)
    def _csrf(exc):
        return render_template("error.html", title="Not done",
                               error=f"{exc.description} Reload the page and try again."), 400

    @app.after_request
    def _count(resp):
        svc.metrics.http_requests.labels(
            request.endpoint or "none", str(resp.status_code)).inc()
        if cfg.server.access_log:  # the path only: a /ks/ token or a query must not reach the log
            access_log.info("http %s %s from %s: %s %s", request.method, loggable_path(request.path),
                            request.remote_addr, resp.status_code, resp.content_length)
        return resp

    @app.errorhandler(NotFound)
    def _not_found(exc):
        return jsonify(error=str(exc)), 404

    @app.errorhandler(Conflict)
    def _conflict(exc):
        return jsonify(error=str(exc)), 409

    @app.errorhandler(InputError)
    def _bad_input(exc):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(ProvisionError)
    def _failed(exc):
        return jsonify(error=str(exc)), 500

    return app
