"""A second plugin of the tests, as small as a plugin can be: the hub's tests load two plugins
without any shipped integration."""
from hub.plugin import Plugin


class SecondPlugin(Plugin):
    key = "second_example"
    title = "Second Example"
    description = "Declares nothing but its name."


plugin = SecondPlugin()
