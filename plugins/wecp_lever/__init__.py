"""WeCP–Lever: invite Lever candidates to WeCP tests on a stage change and note their scores."""
from .plugin import WecpLeverPlugin

plugin = WecpLeverPlugin()
