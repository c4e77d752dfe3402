"""URL converters of the hub's routes."""
from __future__ import annotations

from werkzeug.routing import IntegerConverter


class BoundedIntConverter(IntegerConverter):
    """Flask's ``int`` converter for ids: one beyond a signed 64-bit column becomes 0, which no
    row has (ids start at 1), so the route answers 404 as for any unknown id. (Refusing the match
    instead makes werkzeug answer 405 where a sibling rule has other methods.)"""

    MAX = 2**63 - 1

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= self.MAX else 0
