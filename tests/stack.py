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


def loud_lines(stack) -> list[str]:
    """ERROR and CRITICAL lines and tracebacks in the logs of the stack's web and worker processes.

    A healthy stack logs none, expected states included (a revoked connection, a skip): those
    are one-line warnings.
    """
    found = []
    for path in sorted(stack.procs.run_dir.glob("*.log")):
        if not path.name.startswith(("web", "worker")):
            continue
        for line in path.read_text(errors="replace").splitlines():
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                found.append(f"{path.name}: {line[:300]}")
    return found
