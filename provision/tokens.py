"""Build tokens: derived from the server key and a per-build nonce, stored only as a digest.

The store keeps the nonce and sha256(token); only a holder of the server key can re-derive a
token (to render a boot config), and a leaked database yields no usable token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_nonce() -> str:
    return secrets.token_hex(16)


def derive(key: str, nonce: str) -> str:
    mac = hmac.new(key.encode(), f"build:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_valid(token: str) -> bool:
    return 16 <= len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)
