"""External systems, each behind a small protocol with a real client and a fake."""

from ..errors import ProvisionError


class IntegrationError(ProvisionError):
    """A remote system refused or failed a request; the message is the remote system's."""

    def __init__(self, system: str, message: str) -> None:
        super().__init__(f"{system}: {message}")
        self.system, self.detail = system, message


class NotConfigured(IntegrationError):
    pass


class Unconfigured:
    """Stands in for a system with no configuration: validate() and every verb raise NotConfigured."""

    def __init__(self, system: str, hint: str) -> None:
        self.system, self.hint = system, hint

    def validate(self) -> None:
        raise NotConfigured(self.system, f"{self.hint} is not configured")

    def __getattr__(self, name):
        if name.startswith("_") or "hypothesis" in name:  # introspection (copy, pickle, test tools), not a verb
            raise AttributeError(name)

        def fail(*_args, **_kwargs):
            self.validate()
        return fail
