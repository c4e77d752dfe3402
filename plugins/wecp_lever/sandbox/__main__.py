"""Allows `python -m plugins.wecp_lever.sandbox`."""
from .cli import lever_sandbox_command

lever_sandbox_command()
