"""What the demo needs to know of the Lever sandbox: how to start it, what the hub must be told.

The demo (``sandboxes/demo.py``) finds this module for the ``wecp_lever`` plugin; nothing of the
hub or the plugin imports it.
"""
from __future__ import annotations

import sys

from .journey import LEVER_ADMIN, PLUGIN_KEY, run_journey

TITLE = "Lever sandbox"
#: The OAuth client the demo registers in the sandbox, and tells the hub.
CLIENT_ID = "wecp-hub-demo"
CLIENT_SECRET = "sandbox-secret"
DEFAULT_PORT = 5001

journey = run_journey

__all__ = ["PLUGIN_KEY", "TITLE", "DEFAULT_PORT", "argv", "hub_settings", "sign_in", "next_steps", "journey",
           "start_thread", "start_process", "prepare", "reset"]


def argv(port: int, hub_url: str, state_file=None) -> list[str]:
    """The sandbox's command; with a ``state_file`` (the demo), it keeps its state across
    restarts and starts as a new Lever account does, Candidate Stage Change off."""
    callback = f"{hub_url}/integrations/{PLUGIN_KEY}/connect/callback"
    keep = ["--state-file", str(state_file), "--stage-change-off"] if state_file else []
    return [sys.executable, "-m", "sandboxes.lever", "--port", str(port), "--client-id", CLIENT_ID,
            "--client-secret", CLIENT_SECRET, "--redirect-uri", callback, *keep]


def hub_settings(sandbox_url: str) -> dict[str, str]:
    """The hub's settings that point the Lever plugin at this sandbox."""
    return {"LEVER_ENV": "local", "LEVER_SANDBOX_URL": sandbox_url, "LEVER_CLIENT_ID": CLIENT_ID,
            "LEVER_CLIENT_SECRET": CLIENT_SECRET}


def sign_in() -> str:
    return f"{LEVER_ADMIN[0]} / {LEVER_ADMIN[1]}"


def next_steps(hub_url: str, sandbox_url: str, connected: bool = False) -> list[str]:
    """What a person does next; a demo restarted already connected says so instead of "Connect"."""
    return [
        "Lever is connected already (from the last run): Settings › Integrations shows the card Active."
        if connected else "Settings › Integrations › Lever › Connect, sign in to the sandbox and Accept.",
        "In the sandbox, open Acme › Webhooks & deliveries and turn “Candidate Stage Change” on: this Lever starts "
        "with it off, as a new account does, and sends no stage changes until it is on. The Lever "
        "card's checklist ticks “Lever sends stage changes” when the first one arrives (step 4).",
        'Tests › "Sample: Python basics" › Link job posting from Lever: pick a posting and the '
        '"Assessment" stage.',
        "In the sandbox, open that posting's pipeline, click \"New candidate applies\" (candidates who "
        "applied before the link are left alone), then move the new candidate to \"Assessment\".",
        "Open the invitation in the email outbox, take the test, then see the note in the sandbox.",
    ]


class ProcessSandbox:
    """The sandbox as a process of its own (all its state in it)."""

    def __init__(self, proc, url: str):
        from .testing import AdminClient

        self.proc, self.url = proc, url
        self.admin = AdminClient(url, timeout=30)


def start_thread(config: dict | None = None):
    """The sandbox in this process, on a background thread (fast; tests): ``.url``, ``.admin``."""
    from .testing import start_sandbox

    return start_sandbox(config)


def start_process(procs, port: int, hub_url: str, env: dict, *, keep_state: bool = False) -> ProcessSandbox:
    """The sandbox as a child of ``procs`` (a ``sandboxes.stack.Stack``), once it answers;
    ``keep_state`` keeps its state in the run directory across restarts (the demo)."""
    from ..stack import wait_http

    state_file = procs.run_dir / f"{PLUGIN_KEY}-sandbox.json" if keep_state else None
    proc = procs.start(f"{PLUGIN_KEY}-sandbox", argv(port, hub_url, state_file), env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", timeout=60, proc=proc, log=procs.run_dir / f"{PLUGIN_KEY}-sandbox.log")
    return ProcessSandbox(proc, url)


def prepare(sandbox, hub_url: str) -> None:
    """Register the hub's OAuth client with its callback (again after a reset)."""
    callback = f"{hub_url}/integrations/{PLUGIN_KEY}/connect/callback"
    sandbox.admin.add_client(CLIENT_ID, CLIENT_SECRET, [callback], name="WeCP")


def reset(sandbox, hub_url: str) -> None:
    """Back to the seed, without faults, with the hub's client registered."""
    sandbox.admin.reset()
    sandbox.admin.clear_faults()
    prepare(sandbox, hub_url)
