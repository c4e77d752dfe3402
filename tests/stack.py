"""The real stack for end-to-end tests and benchmarks: gunicorn, RQ workers, Lever sandbox, SMTP.

Nothing here needs pytest::

    with HubStack(artifacts=Path("test-artifacts/bench")) as stack:
        stack.create_user("admin@acme.example", "secret-password")
        requests.get(stack.hub_url + "/healthz")

Every subprocess starts in a session of its own, so stopping kills its whole process group
(gunicorn's workers, RQ's work horses) and nothing outlives the stack.
"""
from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import threading
import time
from email import policy
from pathlib import Path

import requests

from hub.demo import group_alive
from tests.services import PostgresDatabase, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent

#: The Lever OAuth client the hub uses against the sandbox.
CLIENT_ID = "wecp-hub-e2e"
CLIENT_SECRET = "e2e-client-secret"
#: Sandbox webhook retries after a failed delivery, seconds (Lever's are minutes apart).
FAST_RETRY_DELAYS = [0.2, 0.5, 1.0, 2.0]
#: A fixed test key for secrets at rest (base64 of 32 bytes).
ENCRYPTION_KEY = "ZTJlLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGk="


class WaitTimeout(AssertionError, TimeoutError):
    """A wait ran out: a failed assertion in tests, a TimeoutError for the benchmarks."""


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, else raise AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces; the fields after its closing parenthesis do not.
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), whatever its process group.

    RQ's work horses call setpgrp(), so a process-group kill of their worker misses them.
    """
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) is not None:
            parents.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its reaper."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def stop_group(proc: subprocess.Popen, timeout: float = 8.0, again_after: float = 1.0) -> bool:
    """Stop the process group of ``proc``: SIGTERM, SIGTERM again, then SIGKILL what is left.

    The second SIGTERM turns an RQ worker's warm shutdown (wait for the running job) into a
    cold one (kill its work horse). True if the group ended without SIGKILL.
    """
    pgid = proc.pid
    started = time.monotonic()
    steps = [(0.0, signal.SIGTERM), (again_after, signal.SIGTERM), (timeout, signal.SIGKILL)]
    killed = False
    while True:
        proc.poll()  # reap the leader, or its group never ends
        if not group_alive(pgid):
            return not killed
        if steps and time.monotonic() - started >= steps[0][0]:
            _, sig = steps.pop(0)
            killed = sig == signal.SIGKILL
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        if not steps and time.monotonic() - started > timeout + 5:
            raise AssertionError(f"process group {pgid} survived SIGKILL")
        time.sleep(0.05)


class MailCatcher:
    """A real SMTP server (aiosmtpd) on a free port that keeps every message it accepts."""

    def __init__(self, port: int = 0):
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=port or free_port())
        self._controller.start()
        self.port = self._controller.port
        self.url = f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        message.envelope_recipients = list(envelope.rcpt_tos)
        with self._lock:
            self.messages.append(message)
        return "250 OK"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def wait_for(self, predicate=lambda m: True, timeout: float = 20.0):
        """The first message for which ``predicate(message)`` is true, waiting up to ``timeout``."""
        def found():
            with self._lock:
                return next((m for m in self.messages if predicate(m)), None)
        return wait_until(found, timeout, 0.05, "an email")

    def stop(self) -> None:
        self._controller.stop()


class HubStack:
    """PostgreSQL, Redis, the Lever sandbox, SMTP, the hub under gunicorn and N RQ workers.

    ``database_url`` / ``redis_url`` reuse running services (tests pass the suite's); without
    them the stack makes a fresh database and starts a private redis-server, and removes both.
    ``app`` is the same hub built in this process, for seeding and reading the database.
    """

    def __init__(self, artifacts: Path, *, database_url: str | None = None,
                 redis_url: str | None = None, workers: int = 1, web_workers: int = 2,
                 sandbox_config: dict | None = None, env: dict | None = None):
        self.artifacts = Path(artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.database_url, self.redis_url = database_url, redis_url
        self.worker_count, self.web_workers = workers, web_workers
        self.sandbox_config = {"SANDBOX_WEBHOOK_RETRY_DELAYS": FAST_RETRY_DELAYS,
                               **(sandbox_config or {})}
        self.extra_env = dict(env or {})
        self.procs: dict[str, subprocess.Popen] = {}
        self._owned: list = []  # services this stack started and must stop
        self.sandbox = self.smtp = self.app = None
        self.port = None
        self.orphans: list[str] = []

    # --- start / stop ---------------------------------------------------------------------
    def start(self) -> HubStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from hub.demo import gunicorn_argv
        from plugins.wecp_lever.sandbox.testing import start_sandbox

        if self.database_url is None:
            db = PostgresDatabase()
            self._owned.append(db.drop)
            self.database_url = db.url
        if self.redis_url is None:
            redis_server = RedisServer()
            self._owned.append(redis_server.stop)
            self.redis_url = redis_server.url
        self.port = free_port()
        self.sandbox = start_sandbox(self.sandbox_config)
        self._owned.append(self.sandbox.stop)
        self.smtp = MailCatcher()
        self._owned.append(self.smtp.stop)
        self.register_client()
        self.app = self._make_app()
        self.run_hub("db", "upgrade")
        self.procs["web"] = self._spawn("web", gunicorn_argv(
            self.port, self.web_workers, "--graceful-timeout", "3", "--access-logfile", "-"))
        for i in range(self.worker_count):
            self.start_worker(f"worker-{i + 1}")
        self.wait_healthy()

    def start_worker(self, name: str) -> subprocess.Popen:
        proc = self._spawn(name, [sys.executable, "-m", "hub.cli", "worker", "--name",
                                  f"{name}-{os.getpid()}-{self.port}"])
        self.procs[name] = proc
        return proc

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def up():
            self.check_alive()
            try:
                return requests.get(self.hub_url + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_until(up, timeout, 0.1, f"the hub at {self.hub_url}/readyz")

    def stop(self) -> None:
        """Stop every process and service; ``orphans`` names what needed SIGKILL or outlived it."""
        for name, proc in reversed(list(self.procs.items())):
            below = descendants(proc.pid)
            if not stop_group(proc):
                self.orphans.append(name)
            for pid in below:
                if running(pid):  # left its group (a work horse) and outlived its parent
                    self.orphans.append(f"{name} child {pid}")
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.procs.clear()
        if self.app is not None:
            from hub.extensions import db

            with self.app.app_context():
                db.engine.dispose()  # or DROP DATABASE would have to force our connections out
        for stop in reversed(self._owned):
            try:
                stop()
            except Exception as exc:  # stopping the others matters more than this one's error
                print(f"stack: stopping {stop} failed: {exc}", file=sys.stderr)
        self._owned.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- configuration --------------------------------------------------------------------
    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def callback_url(self) -> str:
        return f"{self.hub_url}/integrations/wecp_lever/connect/callback"

    def settings(self) -> dict[str, str]:
        """What the hub's processes read from the environment."""
        return {
            "HUB_ENV": "development",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": "e2e-secret-key-that-is-long-enough-0123456789",
            "HUB_ENCRYPTION_KEYS": ENCRYPTION_KEY,
            "HUB_BASE_URL": self.hub_url,
            "HUB_QUEUE_MODE": "rq",
            "LEVER_ENV": "local",
            "LEVER_SANDBOX_URL": self.sandbox.url,
            "LEVER_CLIENT_ID": CLIENT_ID,
            "LEVER_CLIENT_SECRET": CLIENT_SECRET,
            "SMTP_URL": self.smtp.url,
            "MAIL_FROM": "WeCP <no-reply@wecp.test>",
            **self.extra_env,
        }

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HUB_", "LEVER_", "SMTP_")) and k not in
               ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MAIL_FROM")}
        env.update(self.settings())
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _make_app(self):
        from hub import create_app

        config = dict(self.settings())
        config["HUB_ENCRYPTION_KEYS"] = [ENCRYPTION_KEY]
        return create_app(config)

    def register_client(self) -> None:
        self.sandbox.admin.add_client(CLIENT_ID, CLIENT_SECRET, [self.callback_url], name="WeCP")

    # --- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.artifacts / f"{name}.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            return subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

    def run_hub(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``python -m hub.cli ARGS`` against this stack; output goes to hub-cli.log."""
        with open(self.artifacts / "hub-cli.log", "ab") as log:
            log.write(f"\n=== hub {' '.join(args)}\n".encode())
            log.flush()
            return subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=ROOT,
                                  env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=True)

    def check_alive(self) -> None:
        dead = [f"{name} (exit {proc.returncode})" for name, proc in self.procs.items()
                if proc.poll() is not None]
        if dead:
            raise AssertionError(f"stack process(es) died: {', '.join(dead)}\n{self.logs()}")

    def logs(self, tail: int = 6000) -> str:
        out = []
        for path in sorted(self.artifacts.glob("*.log")):
            text = path.read_bytes()[-tail:].decode(errors="replace")
            out.append(f"----- {path} (last {tail} bytes)\n{text}")
        return "\n".join(out)

    # --- state between tests ----------------------------------------------------------------
    def reset(self) -> None:
        """Empty the database and the queues, reset the sandbox to its seed, forget emails."""
        from hub.extensions import db, get_redis

        self.check_alive()
        with self.app.app_context():
            tables = [t.name for t in db.metadata.sorted_tables]
            # A process stuck in a transaction would make TRUNCATE wait forever: fail instead.
            db.session.execute(db.text("SET LOCAL lock_timeout = '15s'"))
            db.session.execute(db.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) +
                                       " RESTART IDENTITY CASCADE"))
            db.session.commit()
            redis = get_redis()
            # Jobs, retries, locks, rate limits and periodic slots go, so nothing of one test
            # runs during the next; the running workers' own registrations stay.
            stale = [k for k in redis.scan_iter(count=500) if not k.startswith(b"rq:worker")]
            if stale:
                redis.delete(*stale)
        self.sandbox.admin.reset()
        self.sandbox.admin.clear_faults()
        self.register_client()
        self.smtp.clear()

    def create_user(self, email: str, password: str, role: str = "admin",
                    org: str = "Acme Hiring") -> int:
        """A WeCP user (and its organization); returns the organization id."""
        from hub.auth import create_user
        from hub.extensions import db

        with self.app.app_context():
            user = create_user(org, email, password, role)
            db.session.commit()
            return user.organization_id

    def enqueue(self, func: str, *args, **options) -> str:
        """Put a job on the stack's queue (the workers run it); returns the job id."""
        from hub.jobs import enqueue

        with self.app.app_context():
            return enqueue(func, *args, **options).id

    def query(self, fn):
        """``fn()`` inside the app context, with a fresh view of the database."""
        from hub.extensions import db

        with self.app.app_context():
            try:
                return fn()
            finally:
                db.session.remove()
