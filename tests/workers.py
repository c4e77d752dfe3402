"""Real `hub worker` processes and a live HTTP server for end-to-end tests, configured like the test app.

Use the ``workers`` fixture (``from tests.workers import workers``) with ``pg_app``::

    def test_something(pg_app, workers):
        workers.start(2)                      # two `python -m hub.cli worker` processes
        ...
        wait_for(lambda: ..., timeout=60)
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading

import pytest
from werkzeug.serving import make_server

from hub import config as hub_config
from hub import jobs as hub_jobs
from hub.extensions import db
from hub.registry import all_plugins
from tests.stack import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _as_env(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def worker_env(app, **extra) -> dict:
    """The environment that makes `hub worker` build the same app as ``app`` (database, Redis, plugins)."""
    keys = set(hub_config.ENVIRONMENT) | set(hub_jobs.CONFIG)
    keys |= {k for plugin in all_plugins(app).values() for k in plugin.config}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "LEVER_"))}
    for key in keys:
        value = app.config.get(key)
        if value is not None:
            env[key] = _as_env(value)
    env.update({k: _as_env(v) for k, v in extra.items()})
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    """Poll ``predicate`` with a fresh view of the database; fail after ``timeout`` seconds."""
    def fresh():
        db.session.expire_all()
        return predicate()
    return wait_until(fresh, timeout, interval, message)


def children_of(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc), e.g. a worker's work horse."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces; fields after the closing parenthesis are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry))
    return found


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


class Workers:
    """Starts and stops `hub worker` subprocesses; logs go to files shown when a test fails."""

    def __init__(self, app, log_dir):
        self.app = app
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.extra_env: dict = {}

    def start(self, count: int = 1, *args: str, **env) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            name = f"test-{secrets.token_hex(4)}"
            log = open(os.path.join(self.log_dir, f"{name}.log"), "wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "worker", "--name", name, *args],
                cwd=ROOT, env=worker_env(self.app, **{**self.extra_env, **env}),
                stdout=log, stderr=subprocess.STDOUT)
            proc.log_path = log.name
            log.close()
            self.procs.append(proc)
            started.append(proc)
        return started

    def run_burst(self, timeout: float = 120, **env) -> subprocess.CompletedProcess:
        """One worker that handles what is queued now, then exits."""
        return subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--burst"], cwd=ROOT,
                              env=worker_env(self.app, **{**self.extra_env, **env}),
                              capture_output=True, timeout=timeout, check=True)

    @staticmethod
    def kill(pid: int) -> None:
        """``kill -9`` one process (a worker or its work horse)."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for proc in self.procs:
            for child in children_of(proc.pid):
                self.kill(child)
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.procs.clear()

    def logs(self) -> str:
        out = []
        for proc in self.procs:
            with open(proc.log_path, "rb") as f:
                out.append(f"--- {proc.log_path}\n" + f.read()[-4000:].decode(errors="replace"))
        return "\n".join(out)


@pytest.fixture
def workers(pg_app, tmp_path):
    """Real `hub worker` processes against the ``pg_app`` database and the test Redis."""
    pool = Workers(pg_app, str(tmp_path))
    yield pool
    print(pool.logs())  # pytest shows captured output only when the test failed
    pool.stop_all()


class LiveServer:
    """The app served over real HTTP by werkzeug in a thread (one thread per request)."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def live_server(pg_app):
    server = LiveServer(pg_app)
    yield server
    server.stop()


def make_connection(plugin_key: str = "tiny_example", org_name: str = "Acme", provider: str = "tiny",
                    **fields):
    """A usable connection row (committed) for intake and job tests."""
    from hub.models import Connection, Organization, utcnow

    org = db.session.scalar(db.select(Organization).filter_by(name=org_name))
    if org is None:
        org = Organization(name=org_name)
        db.session.add(org)
        db.session.flush()
    secret = fields.pop("webhook_secret", None)
    connection = Connection(organization_id=org.id, plugin_key=plugin_key, provider=provider,
                            connected_at=utcnow(), setup_completed_at=utcnow(), **fields)
    connection.credentials = json.dumps({"access_token": "test-access", "refresh_token": "test-refresh"})
    if secret:
        connection.webhook_secret = secret
    db.session.add(connection)
    db.session.commit()
    return connection
