"""WeCP–Lever: invite Lever candidates to WeCP tests on a stage change and note their scores."""
from . import models  # noqa: F401  (the wecp_lever_* tables belong to the app's metadata)
from .plugin import WecpLeverPlugin

plugin = WecpLeverPlugin()
