"""Integrations shipped with the hub, one package per plugin key.

``DEFAULT_PLUGINS`` is what the hub loads when ``HUB_PLUGINS`` is not set: adding an integration
adds its module path here (or to ``HUB_PLUGINS``), and nothing in ``hub/``.
"""

DEFAULT_PLUGINS = (
    "plugins.wecp_lever",
    "plugins.wecp_greenhouse",
)
