"""Local stand-ins for the ATSs the hub integrates with, for development, tests and benchmarks.

Never part of the hub's package (not in the wheel, imported by no module of ``hub/`` or
``plugins/``): each sandbox is its own small Flask app, started as a process of its own
(``python -m sandboxes.<ats>``).
"""
from __future__ import annotations

import importlib
import pkgutil


def standins(plugin_keys) -> list:
    """The stand-in module (``sandboxes.<ats>.standin``) of each plugin key that has one."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}.standin")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{info.name}.standin":
                continue
            raise
        if module.PLUGIN_KEY in plugin_keys:
            found.append(module)
    return sorted(found, key=lambda m: list(plugin_keys).index(m.PLUGIN_KEY))
