"""Plugin registry: loads the plugins named in HUB_PLUGINS into the app, never into a global."""
from __future__ import annotations

import importlib
import logging
import os

from flask import current_app

from .config import ConfigError
from .plugin import Plugin

log = logging.getLogger("hub.registry")

EXTENSION = "hub.plugins"
#: Each loaded plugin's module path (its package: code, templates, migrations).
PATHS = "hub.plugin_paths"


class PluginLoadError(RuntimeError):
    """A plugin named in HUB_PLUGINS could not be loaded."""


def import_string(path: str):
    """Import ``package.module:attr`` or ``package.module.attr``."""
    if ":" in path:
        module, attr = path.split(":", 1)
    else:
        module, _, attr = path.rpartition(".")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_plugins(app) -> dict[str, Plugin]:
    """Import, validate and activate every plugin of ``HUB_PLUGINS``.

    In production a broken plugin is logged with its traceback and skipped, so one bad
    integration does not take the hub down; elsewhere it raises, so tests fail loudly.
    """
    plugins: dict[str, Plugin] = {}
    app.extensions[EXTENSION] = plugins
    strict = app.config.get("HUB_STRICT_PLUGINS", not app.config.get("PRODUCTION"))
    for path in app.config["HUB_PLUGINS"]:
        try:
            plugin = _load_one(app, path)
        except ConfigError:
            raise  # a plugin's production settings are wrong: refuse to start, never skip it
        except Exception as exc:
            if strict:
                raise PluginLoadError(f"plugin {path!r} failed to load: {exc}") from exc
            log.exception("hub.registry.plugin_failed plugin=%s", path)
            continue
        if plugin.key in plugins:
            raise PluginLoadError(f"two plugins share the key {plugin.key!r}")
        plugins[plugin.key] = plugin
        app.extensions.setdefault(PATHS, {})[plugin.key] = path
    return plugins


def _load_one(app, path: str) -> Plugin:
    module = importlib.import_module(path)
    plugin = getattr(module, "plugin", None)
    if not isinstance(plugin, Plugin):
        raise PluginLoadError(f"{path} has no module attribute 'plugin' that is a Plugin")
    folder = os.path.basename(os.path.dirname(module.__file__))
    if plugin.key != folder:
        raise PluginLoadError(f"plugin key {plugin.key!r} must equal its folder name {folder!r}")
    for key, default in plugin.config.items():
        app.config.setdefault(key, os.environ.get(key, default))
    plugin.configure(app.config)
    if app.config.get("PRODUCTION"):
        problems = plugin.production_problems(app.config)
        if problems:
            raise ConfigError(f"refusing to start in production ({plugin.key}): " + "; ".join(problems))
    from .outbox import register_kind

    jobs = plugin.jobs + tuple(p.func for p in plugin.periodic_jobs)
    if plugin.on_connect_job:
        jobs += (plugin.connect_job(),)
    for func in jobs:
        check_importable(func)
        if getattr(func, "kind", None) is not None:
            register_kind(app, func)
    blueprints = []
    if plugin.blueprint:
        blueprints.append((import_string(plugin.blueprint), {"url_prefix": f"/integrations/{plugin.key}"}))
    if plugin.api_blueprint:
        blueprints.append((import_string(plugin.api_blueprint), {}))
    partner = import_string(plugin.partner_blueprint) if plugin.partner_blueprint else None
    if partner is not None and not any(p.auth_mode == "partner_key" for p in plugin.providers):
        raise PluginLoadError(f"{plugin.key}: a partner_blueprint needs a PartnerKeyProvider, whose "
                              f"keys authenticate its callers")
    check_access(plugin, blueprints, partner)
    for bp, options in blueprints:
        app.register_blueprint(bp, **options)
    if partner is not None:
        from .partners import mount

        mount(app, plugin, partner)
    app.extensions.setdefault("hub.test_page_panels", []).extend(plugin.test_page_panels)
    plugin.init_app(app)
    return plugin


def check_access(plugin: Plugin, blueprints, partner=None) -> None:
    """Every route of the plugin says who may call it (``Plugin.access``), and nothing else is said;
    the routes of its partner blueprint, and only those, are ``partner``.

    Adding a URL means deciding who may call it; the security suite holds each route to it. The
    routes are read off a throwaway app, so a refused plugin leaves no route behind.
    """
    from flask import Flask

    from .plugin import ACCESS_LEVELS

    def endpoints_of(pairs) -> set[str]:
        probe = Flask(plugin.key)
        for bp, options in pairs:
            probe.register_blueprint(bp, **options)
        return {rule.endpoint for rule in probe.url_map.iter_rules() if rule.endpoint != "static"}

    partner_endpoints = endpoints_of([(partner, {})]) if partner is not None else set()
    endpoints = endpoints_of(blueprints) | partner_endpoints
    undeclared = sorted(endpoints - set(plugin.access))
    unknown = sorted(set(plugin.access) - endpoints)
    wrong = sorted(e for e, level in plugin.access.items() if level not in ACCESS_LEVELS
                   or (level == "partner") != (e in partner_endpoints))
    if undeclared or unknown or wrong:
        raise PluginLoadError(
            f"{plugin.key}: Plugin.access must name each of its endpoints once with one of "
            f"{ACCESS_LEVELS} (``partner`` for the partner blueprint's routes, and only for them); "
            f"undeclared {undeclared}, not routes {unknown}, unknown level {wrong}")


def check_importable(func) -> None:
    """A job a worker cannot import by its registered name is a job that never runs."""
    from .jobs import spec_of

    name = spec_of(func).name
    if import_string(name) is not func:
        raise PluginLoadError(f"job {name} is not what a worker imports under that name")


def plugin_package(key: str, app=None):
    """The imported package of a loaded plugin (the module its HUB_PLUGINS entry names)."""
    return importlib.import_module((app or current_app).extensions[PATHS][key])


def all_plugins(app=None) -> dict[str, Plugin]:
    return (app or current_app).extensions.get(EXTENSION, {})


def get_plugin(key: str, app=None) -> Plugin:
    """The plugin with ``key``; ``KeyError`` when it is not registered."""
    return all_plugins(app)[key]
