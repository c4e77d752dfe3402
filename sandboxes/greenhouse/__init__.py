"""A local stand-in for Greenhouse as an assessment partner's customer sees it (``python -m sandboxes.greenhouse``)."""
from .app import create_app

__all__ = ["create_app"]
