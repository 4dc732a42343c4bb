"""The read-only TFTP server: a lean protocol engine (engine.py) over the file policy (files.py)."""

from .engine import TftpService, error_packet
from .files import FileResolver

__all__ = ["FileResolver", "TftpService", "error_packet"]
