"""Secret files: a secret from an environment variable or a `*_file` path (never inline, never
logged), and the generated ones (admin token, signing key) created 0600 on first use."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import InputError


def read_secret(path: Path | None, env: str | None, what: str) -> str:
    """A secret from the environment variable `env` (if given and set), else from `path`; never logged."""
    value = os.environ.get(env) if env else None
    if value:
        return value
    if path is None:
        raise InputError(f"{what}: no secret configured (set {env} or the *_file option)")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise InputError(f"{what}: cannot read secret file {path}: {exc.strerror}") from None


def ensure_secret_file(path: Path, nbytes: int = 32) -> str:
    """Read a generated secret (admin token, signing key), creating it 0600 on first use."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(nbytes) + "\n")
    value = path.read_text().strip()
    if len(value) < 16:
        raise InputError(f"secret file {path}: shorter than 16 characters")
    return value
