"""A plugin whose key does not match its folder: the registry must refuse it."""
from hub.plugin import Plugin


class Broken(Plugin):
    key = "not_my_folder"
    title = "Broken"


plugin = Broken()
