"""provision: unattended reinstall of bare-metal hypervisors."""

__version__ = "0.1.0"
