"""Lever sandbox: a local stand-in for Lever's OAuth server, REST API v1 and webhooks."""
from .app import create_app

__all__ = ["create_app"]
