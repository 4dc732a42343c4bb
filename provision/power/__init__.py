from .base import (
    PowerAuthError,
    PowerDriver,
    PowerError,
    PowerRejected,
    PowerTimeout,
    PowerUnreachable,
)

__all__ = ["PowerAuthError", "PowerDriver", "PowerError", "PowerRejected", "PowerTimeout", "PowerUnreachable"]
