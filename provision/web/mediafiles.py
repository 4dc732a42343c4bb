"""Sending a file core/files.py opened, with the headers a download needs: its type by name, an
ETag and Last-Modified from the descriptor's own stat, Range and conditional requests (werkzeug)."""

from __future__ import annotations

import mimetypes
import os

from flask import Response, send_file

from ..core.files import Opened, etag

_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def content_type(name: str) -> str:
    """By the name, never with a Content-Encoding: a repository's primary.xml.gz is a gzip file to
    the installer, not XML the HTTP client should unpack."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return _ENCODED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


def send_opened(opened: Opened, mimetype: str | None = None) -> Response:
    """The checked descriptor, reopened by its /proc path (the same file, whatever the name now
    points at); the caller's descriptor is closed here."""
    try:
        return send_file(f"/proc/self/fd/{opened.fd}", mimetype=mimetype or content_type(opened.name),
                         download_name=opened.name, etag=etag(opened.stat), conditional=True,
                         last_modified=opened.stat.st_mtime)
    finally:
        os.close(opened.fd)
