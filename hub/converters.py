"""URL converters of the hub's routes."""
from __future__ import annotations

from werkzeug.routing import IntegerConverter


class BoundedIntConverter(IntegerConverter):
    """Flask's ``int`` converter for ids: one beyond a signed 32-bit column becomes 0, which no
    row has (ids start at 1), so the route answers 404 as for any unknown id. (Refusing the match
    instead makes werkzeug answer 405 where a sibling rule has other methods.)

    32 bits: the tables the routes address have INTEGER keys, and PostgreSQL refuses a larger
    number in their query (a 500; found by the API's schemathesis check). A route to a table with
    BIGINT keys (webhook deliveries) checks its id itself (``hub.work``)."""

    MAX = 2**31 - 1

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= self.MAX else 0
