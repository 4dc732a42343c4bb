"""Exceptions shared across layers. The CLI maps them to exit codes (2 for bad input, 1 otherwise)."""


class ProvisionError(Exception):
    """A failed operation (exit code 1)."""


class InputError(ProvisionError):
    """Bad input from the operator: inventory, config, arguments (exit code 2)."""


class NotFound(InputError):
    """A named object (node, snapshot) does not exist."""


class Conflict(InputError):
    """The request is valid but the object's state does not allow it now (HTTP 409)."""
