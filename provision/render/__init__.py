from .check import check_kickstart
from .context import MASK, Secrets, build_context
from .env import make_env
from .renderer import KINDS, Rendered, Renderer

__all__ = ["KINDS", "MASK", "Rendered", "Renderer", "Secrets", "build_context", "check_kickstart", "make_env"]
