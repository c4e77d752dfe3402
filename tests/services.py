"""Real Redis and PostgreSQL for the tests (see ``sandboxes.services``)."""
from sandboxes.services import (  # noqa: F401  (re-exported for the tests)
    PostgresDatabase,
    PrivatePostgres,
    RedisServer,
    ServiceUnavailable,
    free_port,
)
