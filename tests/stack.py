"""The real stack for end-to-end tests: the one process stack of ``sandboxes.stack``."""
from sandboxes.stack import (  # noqa: F401  (re-exported for the tests)
    ROOT,
    HubStack,
    MailCatcher,
    WaitTimeout,
    children_of,
    descendants,
    group_alive,
    running,
    stop_group,
    wait_until,
)
