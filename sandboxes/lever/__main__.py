"""Allows `python -m sandboxes.lever`."""
from .cli import lever_sandbox_command

lever_sandbox_command()
