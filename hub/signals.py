"""Signals the hub sends; plugins connect receivers to them in ``init_app``."""
from blinker import Namespace

_signals = Namespace()

#: Sent with ``connection`` after a connection is stored and its tokens proved to work.
connection_created = _signals.signal("connection-created")

#: Sent with ``connection`` and ``reason`` when the provider refuses our credentials for good.
connection_revoked = _signals.signal("connection-revoked")

#: Sent with ``connection`` after an admin disconnects it in the hub.
connection_disconnected = _signals.signal("connection-disconnected")

#: Sent with ``connection`` when a revoked connection is authorised again (paused work resumes).
connection_restored = _signals.signal("connection-restored")

#: Sent with ``delivery`` after a webhook delivery is stored in the inbox.
delivery_received = _signals.signal("delivery-received")
