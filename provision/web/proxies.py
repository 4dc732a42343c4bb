"""[server] trusted_proxies: behind a reverse proxy (nginx for TLS, docs/nginx.md) every request's
peer is the proxy, and the callbacks' and the kickstart's source checks need the node's address.
For a request whose peer is in a trusted network, werkzeug's ProxyFix takes the client's address
from the last hop of X-Forwarded-For and the scheme from X-Forwarded-Proto (one proxy hop); from any
other peer those headers are dropped, so a forged X-Forwarded-For changes nothing."""

from __future__ import annotations

import ipaddress

from werkzeug.middleware.proxy_fix import ProxyFix

FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
             "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")


def trusted(peer: str | None, networks) -> bool:
    try:
        addr = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    return any(addr in net for net in networks)


def middleware(app, networks):
    networks = list(networks)
    fixed = ProxyFix(app, x_for=1, x_proto=1)

    def wsgi(environ, start_response):
        if networks and trusted(environ.get("REMOTE_ADDR"), networks):
            return fixed(environ, start_response)
        for name in FORWARDED:
            environ.pop(name, None)
        return app(environ, start_response)

    return wsgi
