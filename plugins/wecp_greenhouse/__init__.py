"""WeCP–Greenhouse: WeCP as a Greenhouse assessment partner (Greenhouse calls WeCP)."""
from . import models  # noqa: F401  (the wecp_greenhouse_* tables belong to the app's metadata)
from .plugin import WecpGreenhousePlugin

plugin = WecpGreenhousePlugin()
