"""The one chokepoint for HTTP calls to external systems: timeouts, bounded retries with backoff
on transient failures (connection errors, timeouts, 502/503/504), and error messages that carry
the remote system's reason but never a secret or a stack trace."""

from __future__ import annotations

import logging

import requests
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from . import IntegrationError

log = logging.getLogger("provision.integrations")
TRANSIENT_STATUS = {502, 503, 504}


class Transient(IntegrationError):
    """A failure worth retrying."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


class HttpClient:
    def __init__(self, system: str, base: str, *, error=None, verify: str | bool = True, timeout: float = 30.0,
                 attempts: int = 4, backoff: float = 0.5) -> None:
        self.system, self.base = system, base.rstrip("/")
        self.error = error or (lambda message: IntegrationError(system, message))  # the client's own type
        self.session = requests.Session()
        self.verify = verify  # passed per request: a Session.verify loses to REQUESTS_CA_BUNDLE
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """Send one request (retried while transient); returns any response with status < 500
        that is not 502/503/504 for the caller to interpret."""
        call = retry(retry=retry_if_exception(_retryable), stop=stop_after_attempt(self.attempts),
                     wait=wait_exponential(multiplier=self.backoff, max=8), reraise=True)(self._once)
        try:
            return call(method, path, **kwargs)
        except Transient as exc:
            raise self.error(f"{exc.detail} (gave up after {self.attempts} attempts)") from None

    def _once(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}{path}"
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("verify", self.verify)
        try:
            resp = self.session.request(method, url, **kwargs)
        except requests.Timeout:
            log.warning("%s %s %s: timed out", self.system, method, path)
            raise Transient(self.system, f"{method} {path}: no answer within {self.timeout:.0f} s") from None
        except requests.exceptions.SSLError as exc:
            raise self.error(f"{self.base}: TLS: {cause(exc)} ({method} {path})") from None
        except requests.ConnectionError as exc:
            log.warning("%s %s %s: %s", self.system, method, path, cause(exc))
            raise Transient(self.system, f"{self.base}: {cause(exc)} ({method} {path})") from None
        if resp.status_code in TRANSIENT_STATUS:
            log.warning("%s %s %s: HTTP %s", self.system, method, path, resp.status_code)
            raise Transient(self.system, f"{method} {path}: HTTP {resp.status_code}")
        return resp


_ERRNO = {"ECONNREFUSED": "connection refused", "EHOSTUNREACH": "no route to host",
          "ENETUNREACH": "network unreachable", "ECONNRESET": "connection reset", "ETIMEDOUT": "timed out"}


def cause(exc: BaseException) -> str:
    """The root cause of a requests/urllib3 error in a few words ("connection refused", "name
    api.example.com does not resolve", "certificate verify failed: ..."), not urllib3's
    "HTTPSConnectionPool(...): Max retries exceeded ... (Caused by NewConnectionError(...))"."""
    import errno
    import socket
    import ssl

    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    found: list[BaseException] = []
    while todo:  # every exception it wraps: causes, contexts, urllib3's .reason, requests' args
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        found.append(e)
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                 if isinstance(x, BaseException)]
    for e in found:
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {e.verify_message}"
        if isinstance(e, socket.gaierror):
            return "name does not resolve" + (f" ({e.strerror})" if e.strerror else "")
    for e in found:
        code = getattr(e, "errno", None)
        if isinstance(e, OSError) and isinstance(code, int) and code > 0:
            name = errno.errorcode.get(code, "")
            return _ERRNO.get(name, (e.strerror or name).lower())
    for e in found:
        if isinstance(e, ssl.SSLError):
            return e.reason.lower().replace("_", " ") if e.reason else "TLS handshake failed"
    text = str(found[-1] if found else exc)
    return text if len(text) < 160 else text[:160] + "..."
