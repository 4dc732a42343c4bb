"""The access log's view of a request path: build and collection tokens masked."""

from __future__ import annotations

import re

_TOKEN_PATH = re.compile(r"^(/ks/|/vmedia/|/api/v1/callback/|/api/v1/collect/)[^/]*")


def loggable_path(path: str) -> str:
    """The path as the access log shows it: build and collection tokens masked."""
    return _TOKEN_PATH.sub(r"\1********", path)
