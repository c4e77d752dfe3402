"""The one process stack of a local hub: PostgreSQL, Redis, SMTP, the sandboxes, web and workers.

Shared by the demo (``python -m sandboxes.demo``), the end-to-end tests (``tests/e2e``), the
test suite's worker tests and the benchmarks (``bench/``)::

    with HubStack(Path("test-artifacts/e2e")) as stack:
        stack.create_user("admin@acme.example", "secret-password")
        requests.get(stack.hub_url + "/healthz")

Every child process starts in a session of its own, so stopping it kills its whole process
group (gunicorn's workers, RQ's work horses) and nothing outlives the stack. Development and
tests only: nothing of the hub imports it.
"""
from __future__ import annotations

import email
import inspect
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from email import policy
from pathlib import Path

from .services import PostgresDatabase, PrivatePostgres, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent

#: Sandbox webhook retries after a failed delivery, seconds (Lever's are minutes apart).
FAST_RETRY_DELAYS = [0.2, 0.5, 1.0, 2.0]
#: A fixed key for secrets at rest in a local stack (base64 of 32 bytes).
ENCRYPTION_KEY = "ZTJlLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGk="


class StackError(RuntimeError):
    """A part of the stack could not start (its message says which, and where its log is)."""


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


def stop_group(proc: subprocess.Popen, timeout: float = 8.0, again_after: float = 2.5) -> bool:
    """Stop the process group of ``proc``: SIGTERM, SIGTERM again, then SIGKILL what is left.

    The second SIGTERM turns an RQ worker's warm shutdown (wait for the running job) into a
    cold one (stop the job). RQ ignores a second signal that comes less than a second after the
    first it handled (``Worker.request_force_stop``: a pool's duplicate), and a busy machine can
    handle the first one late: the second comes well after that second. True if the group ended
    without SIGKILL.
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


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    """Wait until ``url`` answers at all; StackError if ``proc`` exits first or time runs out."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            where = f"; see {log}" if log else ""
            raise StackError(f"the process for {url} exited (code {proc.returncode}) "
                                       f"before answering{where}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise StackError(f"{url} did not answer within {timeout:.0f}s")


def redis_answers(url: str) -> bool:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


class Stack:
    """Child processes, each leading a process group of its own, with a log each in ``run_dir``.

    Stopped together (in reverse order) on Ctrl-C, SIGTERM or any failure: stopping a child's
    group leaves nothing behind, and a Ctrl-C in the terminal reaches only this process.
    Reads like a mapping from name to process (``stack["web"]``).
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.orphans: list[str] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        with open(self.run_dir / f"{name}.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        proc.name = name
        self.procs[name] = proc
        return proc

    def stop_one(self, proc: subprocess.Popen) -> None:
        """Stop one child's group (SIGTERM twice, then SIGKILL) and what left it."""
        below = descendants(proc.pid)
        if not stop_group(proc):
            self.orphans.append(proc.name)
        for pid in below:
            if running(pid):  # left its group (a work horse) and outlived its parent
                self.orphans.append(f"{proc.name} child {pid}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.procs = {n: p for n, p in self.procs.items() if p is not proc}

    def stop(self, proc: subprocess.Popen | None = None) -> None:
        """Stop one child (``proc``), or every child, last started first."""
        if proc is not None:
            self.stop_one(proc)
            return
        # A second Ctrl-C while stopping must not leave children running.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) \
            if threading.current_thread() is threading.main_thread() else None
        try:
            for proc in reversed(list(self.procs.values())):
                self.stop_one(proc)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    stop_all = stop

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.run_dir / f"{name}.log"
        return path.read_bytes()[-chars:].decode(errors="replace") if path.exists() else ""

    def __getitem__(self, name: str) -> subprocess.Popen:
        return self.procs[name]

    def __contains__(self, name: str) -> bool:
        return name in self.procs

    def values(self):
        return self.procs.values()

    def items(self):
        return self.procs.items()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _stop_on_sigterm(signum, frame):
    # `kill <pid>`, a closed terminal or a supervisor: stop the children as Ctrl-C does.
    raise KeyboardInterrupt


def gunicorn_argv(port: int, workers: int = 2, *extra: str, threads: int = 4) -> list[str]:
    """The hub under gunicorn on 127.0.0.1:``port`` (gthread workers when ``threads`` > 1)."""
    import gunicorn.config

    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "--backlog", "2048", "--timeout", "60", *extra]
    if threads > 1:
        argv += ["--worker-class", "gthread", "--threads", str(threads)]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        # gunicorn ≥ 25 opens one control socket per user (~/.gunicorn): several hubs on one
        # machine (a demo and a test run) would take it from each other.
        argv.append("--no-control-socket")
    return argv + ["wsgi:app"]


def hub_command(*args: str) -> list[str]:
    """``hub ARGS`` as a child process (the interpreter of this process)."""
    return [sys.executable, "-m", "hub.cli", *args]


def start_redis(stack: Stack, port: int, keep_in: Path | None = None) -> str | None:
    """A redis-server on ``port``; its URL, or None without the binary. Throwaway, or with
    ``keep_in`` a folder where it keeps its data across restarts (``redis.rdb``: sessions, the
    queue), saved each minute that something changed and when it stops."""
    url = f"redis://127.0.0.1:{port}/0"
    if redis_answers(url):
        return url
    binary = shutil.which("redis-server")
    if not binary:
        return None
    if port_in_use(port):
        raise StackError(f"port {port} is in use but is not Redis: use --redis-port")
    persistence = ["--save", ""] if keep_in is None else \
        ["--dir", str(keep_in), "--dbfilename", "redis.rdb", "--save", "60 1"]
    stack.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", *persistence,
                          "--appendonly", "no"], dict(os.environ))
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise StackError(f"redis-server did not start; see {stack.run_dir}/redis.log")
        time.sleep(0.1)
    return url


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
        message.received_at = time.time()
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


class Server:
    """A gunicorn master and its workers."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.proc.pid] + children_of(self.proc.pid)


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class HubStack:
    """PostgreSQL, Redis, SMTP, the sandboxes, the hub under gunicorn and N `hub worker`s.

    - ``database``: a URL to use; ``"private"`` for a cluster of our own that a fault scenario
      may stop; default a fresh database on the server that answers (dropped at the end).
    - ``redis_url``: a running Redis; default a private redis-server (a scenario may stop it).
    - ``sandboxes``: ``"thread"`` (in this process, fast: tests), ``"process"`` (each its own
      process, all its state there: benchmarks) or ``None``; ``keep_sandbox_state`` keeps a
      process sandbox's state in the run directory across restarts (the demo).
    - ``smtp``: a real SMTP server (aiosmtpd) the hub sends to; ``False`` keeps emails in the
      hub's outbox.
    - ``web``: start gunicorn (``web_workers`` × ``threads``); ``workers``: `hub worker` count.
    - ``config``: the hub's settings over the stack's defaults (environment and ``app``).

    ``app`` is the same hub built in this process, for seeding and reading the database.
    """

    def __init__(self, run_dir: Path, *, database: str | None = None, redis_url: str | None = None,
                 sandboxes: str | None = "thread", smtp: bool = True, web: bool = True,
                 web_workers: int = 2, threads: int = 4, workers: int = 1,
                 sandbox_config: dict | None = None, config: dict | None = None,
                 plugins: list[str] | None = None, port: int | None = None,
                 sandbox_port: int | None = None, keep_sandbox_state: bool = False):
        self.procs = Stack(run_dir)
        self.artifacts = self.procs.run_dir
        self._database, self.redis_url = database, redis_url
        self.sandbox_mode, self.use_smtp, self.use_web = sandboxes, smtp, web
        self.web_workers, self.threads, self.worker_count = web_workers, threads, workers
        self.sandbox_config = {"SANDBOX_WEBHOOK_RETRY_DELAYS": FAST_RETRY_DELAYS, **(sandbox_config or {})}
        self.config = dict(config or {})
        self.plugins = plugins
        self._owned: list = []  # services this stack started and must stop
        self.sandboxes: dict[str, object] = {}
        self.pg = self.redis = self.smtp = self.app = self.web = None
        self.workers: list[subprocess.Popen] = []
        self.database_url = None
        self.port, self.sandbox_port = port, sandbox_port
        self.keep_sandbox_state = keep_sandbox_state

    # --- start / stop ---------------------------------------------------------------------
    def start(self) -> HubStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from . import standins

        if self._database in (None, "private"):
            self.pg = PrivatePostgres() if self._database == "private" else PostgresDatabase()
            self._owned.append(self.pg.destroy if isinstance(self.pg, PrivatePostgres) else self.pg.drop)
            self.database_url = self.pg.url
        else:
            self.database_url = self._database
        if self.redis_url is None:
            self.redis = RedisServer()
            self._owned.append(self.redis.stop)
            self.redis_url = self.redis.url
        self.port = self.port or free_port()
        if self.sandbox_mode:
            for i, standin in enumerate(standins(self.plugin_keys())):
                if self.sandbox_mode == "thread":
                    handle = standin.start_thread(self.sandbox_config)
                    self._owned.append(handle.stop)
                else:
                    port = self.sandbox_port + i if self.sandbox_port else free_port()
                    handle = standin.start_process(self.procs, port, self.hub_url, self._base_env(),
                                                   keep_state=self.keep_sandbox_state)
                standin.prepare(handle, self.hub_url)
                handle.standin = standin
                self.sandboxes[standin.PLUGIN_KEY] = handle
        if self.use_smtp:
            self.smtp = MailCatcher()
            self._owned.append(self.smtp.stop)
        # The processes' metrics files (hub.metrics), emptied as they all start.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir(parents=True)
        self.app = self._make_app()
        self.run_hub("db", "upgrade")
        if self.use_web:
            proc = self.procs.start("web", gunicorn_argv(
                self.port, self.web_workers, "--graceful-timeout", "3", "--access-logfile", "-",
                threads=self.threads), self.env)
            self.web = Server(proc, self.port)
        if self.settings()["HUB_QUEUE_MODE"] == "rq":
            for _ in range(self.worker_count):
                self.start_worker()
        if self.use_web:
            self.wait_healthy()

    def plugin_keys(self) -> list[str]:
        from hub.config import _default_plugins

        return [p.rsplit(".", 1)[-1] for p in (self.plugins or _default_plugins())]

    def start_worker(self, name: str | None = None, *args: str) -> subprocess.Popen:
        name = name or f"worker-{len(self.workers) + 1}"
        rq_name = f"{name}-{os.getpid()}-{secrets.token_hex(3)}"
        proc = self.procs.start(name, hub_command("worker", "--name", rq_name, *args), self.env)
        proc.rq_name = rq_name
        self.workers.append(proc)
        return proc

    def stop_worker(self, proc: subprocess.Popen) -> None:
        self.procs.stop_one(proc)
        if proc in self.workers:
            self.workers.remove(proc)

    def alive_workers(self) -> int:
        return sum(1 for p in self.workers if p.poll() is None)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        import requests

        # Without Redis (the demo's inline queue) the hub is never "ready": alive is enough.
        probe = "/readyz" if self.settings()["HUB_QUEUE_MODE"] == "rq" else "/healthz"

        def up():
            self.check_alive()
            try:
                return requests.get(self.hub_url + probe, timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_until(up, timeout, 0.1, f"the hub at {self.hub_url}{probe}")
        if self.web is not None:  # gunicorn answers from its first worker: wait for all of them
            deadline = time.monotonic() + 30
            while len(children_of(self.web.proc.pid)) < self.web_workers and time.monotonic() < deadline:
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop every process and service; ``orphans`` names what needed SIGKILL or outlived it."""
        self.procs.stop()
        self.workers.clear()
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

    close = stop

    @property
    def orphans(self) -> list[str]:
        return self.procs.orphans

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- configuration --------------------------------------------------------------------
    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sandbox(self):
        """The first sandbox (most stacks have one): ``.url``, ``.admin``."""
        return next(iter(self.sandboxes.values()), None)

    @property
    def admin(self):
        return self.sandbox.admin if self.sandbox else None

    @property
    def sandbox_url(self) -> str | None:
        return self.sandbox.url if self.sandbox else None

    def settings(self) -> dict[str, str]:
        """What the hub's processes read from the environment."""
        settings = {
            "HUB_ENV": "development",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": "local-stack-secret-key-that-is-long-enough-0123456789",
            "HUB_ENCRYPTION_KEYS": ENCRYPTION_KEY,
            "HUB_BASE_URL": self.hub_url,
            "HUB_QUEUE_MODE": "rq",
            "MAIL_FROM": "WeCP <no-reply@wecp.test>",
        }
        if self.plugins:
            settings["HUB_PLUGINS"] = ",".join(self.plugins)
        if self.smtp is not None:
            settings["SMTP_URL"] = self.smtp.url
        for handle in self.sandboxes.values():
            settings.update(handle.standin.hub_settings(handle.url))
        settings.update({k: _as_env(v) for k, v in self.config.items()})
        return settings

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HUB_", "LEVER_", "SMTP_")) and k not in
               ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MAIL_FROM")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        return env

    @property
    def metrics_dir(self) -> Path:
        return Path(self.procs.run_dir) / "metrics"

    @property
    def env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(self.settings())
        return env

    def _make_app(self):
        from hub import create_app

        config = dict(self.settings())
        config.update(self.config)
        config["HUB_ENCRYPTION_KEYS"] = [ENCRYPTION_KEY]
        return create_app(config)

    # --- processes ------------------------------------------------------------------------
    def run_hub(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``hub ARGS`` against this stack; output goes to hub-cli.log."""
        with open(self.artifacts / "hub-cli.log", "ab") as log:
            log.write(f"\n=== hub {' '.join(args)}\n".encode())
            log.flush()
            return subprocess.run(hub_command(*args), cwd=ROOT, env=self.env, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=True)

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
        """Empty the database and the queues, reset the sandboxes to their seed, forget emails."""
        import sqlalchemy as sa

        from hub.extensions import db, get_redis

        self.check_alive()
        with self.app.app_context():
            existing = set(sa.inspect(db.engine).get_table_names())
            tables = [t.name for t in db.metadata.sorted_tables if t.name in existing]
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
        for handle in self.sandboxes.values():
            handle.standin.reset(handle, self.hub_url)
        if self.smtp is not None:
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

    def enqueue(self, func, *args, **options) -> str:
        """Put a job on the stack's queue (the workers run it); returns the job id."""
        from hub.jobs import enqueue

        with self.app.app_context():
            return enqueue(func, *args, **options).id

    def query(self, fn):
        """``fn()`` (or ``fn(db)``) inside the app context, with a fresh view of the database."""
        from hub.extensions import db

        with self.app.app_context():
            try:
                return fn(db) if inspect.signature(fn).parameters else fn()
            finally:
                db.session.remove()


def _as_env(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
