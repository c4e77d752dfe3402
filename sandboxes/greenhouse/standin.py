"""What the demo needs to know of the Greenhouse sandbox: how to start it, what the hub must be told.

The demo (``sandboxes/demo.py``) finds this module for the ``wecp_greenhouse`` plugin; nothing of
the hub or the plugin imports it.
"""
from __future__ import annotations

import sys

from .journey import PLUGIN_KEY, run_journey

TITLE = "Greenhouse sandbox"
DEFAULT_PORT = 5002

journey = run_journey

__all__ = ["PLUGIN_KEY", "TITLE", "DEFAULT_PORT", "argv", "hub_settings", "sign_in", "next_steps", "journey",
           "start_thread", "start_process", "prepare", "reset"]


def argv(port: int, hub_url: str, state_file=None) -> list[str]:
    # Its state lives in its process: a restarted demo starts from the seed again.
    return [sys.executable, "-m", "sandboxes.greenhouse", "--port", str(port)]


def hub_settings(sandbox_url: str) -> dict[str, str]:
    """The hub's settings that make the Greenhouse plugin call (and link to) this sandbox."""
    from .app import HARVEST_CLIENT_ID, HARVEST_CLIENT_SECRET

    return {"GREENHOUSE_ENV": "local", "GREENHOUSE_SANDBOX_URL": sandbox_url,
            "GREENHOUSE_HARVEST_CLIENT_ID": HARVEST_CLIENT_ID, "GREENHOUSE_HARVEST_CLIENT_SECRET": HARVEST_CLIENT_SECRET}


def sign_in() -> str:
    return "no sign-in (a stand-in)"


def next_steps(hub_url: str, sandbox_url: str, connected: bool = False) -> list[str]:
    return [
        "Greenhouse has a key from the last run, but this sandbox starts afresh: on the Greenhouse card, "
        "Rotate key for a new one (shown once, with the four addresses)."
        if connected else "Settings › Integrations › Greenhouse › Connect: WeCP shows a key once, with four addresses.",
        f"In the sandbox, open Support: assessment partner ({sandbox_url}/support) and enter the key and the "
        "four addresses, as Greenhouse Support does for a customer.",
        "Open the job Backend Engineer: the Take Home Test stage lists your WeCP tests; pick \"Sample: Python basics\".",
        "Move a candidate to Take Home Test and click Send Test: WeCP emails them (see the email outbox).",
        "Take the test from the email: the candidate's page in the sandbox shows complete, the score and the "
        "report link.",
        "Optional, Harvest: on the Greenhouse card, Connect Greenhouse Harvest and Authorize in the sandbox; under "
        "Activity and settings › Change…, pick Onsite for Backend Engineer. The next candidate who passes gets the "
        "score as a note and moves to Onsite.",
    ]


class ProcessSandbox:
    def __init__(self, proc, url: str):
        from .testing import AdminClient

        self.proc, self.url = proc, url
        self.admin = AdminClient(url, timeout=30)


def start_thread(config: dict | None = None):
    """The sandbox in this process, on a background thread (tests): ``.url``, ``.admin``."""
    from .testing import start_sandbox

    return start_sandbox(config)


def start_process(procs, port: int, hub_url: str, env: dict, *, keep_state: bool = False) -> ProcessSandbox:
    """The sandbox as a child of ``procs`` (a ``sandboxes.stack.Stack``), once it answers."""
    from ..stack import wait_http

    proc = procs.start(f"{PLUGIN_KEY}-sandbox", argv(port, hub_url), env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", timeout=60, proc=proc, log=procs.run_dir / f"{PLUGIN_KEY}-sandbox.log")
    return ProcessSandbox(proc, url)


def prepare(sandbox, hub_url: str) -> None:
    """Nothing to register: Greenhouse is told of WeCP with the key the admin issues."""


def reset(sandbox, hub_url: str) -> None:
    """Back to the seed, without faults and without a partner set up."""
    sandbox.admin.reset()
