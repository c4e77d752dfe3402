"""`hub demo`: the whole stack on one machine (Redis, Lever sandbox, web, worker) with seed data."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
from flask.cli import with_appcontext

ROOT = Path(__file__).resolve().parent.parent

#: The demo's sign-in, printed at start-up (a development database only).
DEMO_ORG = "Acme Hiring"
DEMO_ADMIN = "admin@acme.example"
DEMO_PASSWORD = "demo-password"
#: The sandbox's default OAuth client (plugins/wecp_lever/sandbox).
SANDBOX_CLIENT_ID = "wecp-hub-demo"
SANDBOX_CLIENT_SECRET = "sandbox-secret"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            where = f"; see {log}" if log else ""
            raise click.ClickException(f"the process for {url} exited (code {proc.returncode}) "
                                       f"before answering{where}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise click.ClickException(f"{url} did not answer within {timeout:.0f}s")


def redis_answers(url: str) -> bool:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


class Stack:
    """Child processes of the demo, stopped together on Ctrl-C, SIGTERM or any failure.

    Each child leads a process group of its own (gunicorn's workers and RQ's work horses
    join it), so stopping a child's group leaves nothing behind, and a Ctrl-C in the terminal
    reaches only this process, which then stops the children in order.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        with open(self.run_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self, timeout: float = 10.0) -> None:
        # A second Ctrl-C while stopping must not leave children running.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for _, proc in reversed(self.procs):
                _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for _, proc in reversed(self.procs):
                while group_alive(proc.pid) and time.monotonic() < deadline:
                    proc.poll()  # reap the leader so its group can end
                    time.sleep(0.05)
                if group_alive(proc.pid):
                    _signal_group(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self.procs.clear()
        finally:
            signal.signal(signal.SIGINT, previous)

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs if proc.poll() is not None]


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


def demo_environment(port: int, sandbox_port: int, redis_url: str, queue_mode: str,
                     run_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "HUB_ENV": "development",
        "DATABASE_URL": env.get("DATABASE_URL") or f"sqlite:///{run_dir / 'demo.sqlite3'}",
        "REDIS_URL": redis_url,
        "HUB_QUEUE_MODE": queue_mode,
        "HUB_BASE_URL": f"http://127.0.0.1:{port}",
        "LEVER_ENV": "local",
        "LEVER_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
        "LEVER_CLIENT_ID": SANDBOX_CLIENT_ID,
        "LEVER_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "PYTHONUNBUFFERED": "1",
    })
    return env


def gunicorn_argv(port: int, workers: int = 2, *extra: str) -> list[str]:
    """The hub under gunicorn on 127.0.0.1:``port`` (the demo and the end-to-end tests)."""
    import gunicorn.config

    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", "4",
            "-b", f"127.0.0.1:{port}", *extra]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        # gunicorn ≥ 25 opens one control socket per user (~/.gunicorn): several hubs on one
        # machine (a demo and a test run) would take it from each other.
        argv.append("--no-control-socket")
    return argv + ["wsgi:app"]


def _hub(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub.cli", *args]


def run_step(what: str, argv: list[str], env: dict, run_dir: Path) -> None:
    """Run a set-up command to completion; its output goes to setup.log, shown if it fails."""
    log_path = run_dir / "setup.log"
    with open(log_path, "ab") as log:
        log.write(f"\n=== {what}: {' '.join(argv)}\n".encode())
        log.flush()
        result = subprocess.run(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        tail = log_path.read_bytes()[-2000:].decode(errors="replace")
        raise click.ClickException(
            f"{what} failed (exit {result.returncode}); from {log_path}:\n{tail}")


def seed(env: dict, run_dir: Path) -> None:
    """Create the demo organization, admin and sample test (once)."""
    run_step("seeding the demo data", _hub("demo-seed"), env, run_dir)


@click.command("demo")
@click.option("--port", default=5000, show_default=True, help="Port of the hub.")
@click.option("--sandbox-port", default=5001, show_default=True, help="Port of the Lever sandbox.")
@click.option("--redis-port", default=6379, show_default=True,
              help="Port of the Redis to use or start (ignored when REDIS_URL is set).")
@click.option("--workers", default=1, show_default=True, help="RQ worker processes.")
@click.option("--scripted", is_flag=True, help="Run the whole journey without a person, then stop.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=ROOT / "instance" / "demo", show_default="instance/demo",
              help="Where the demo keeps its SQLite database and logs.")
def demo_command(port, sandbox_port, redis_port, workers, scripted, data_dir):
    """Start Redis, the Lever sandbox, the hub and a worker, seeded, and print where to go."""
    run_dir = data_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if port == sandbox_port:
        raise click.UsageError("--port and --sandbox-port must differ")
    for p, what, option in ((port, "hub", "--port"),
                            (sandbox_port, "Lever sandbox", "--sandbox-port")):
        if port_in_use(p):
            raise click.ClickException(
                f"port {p} (for the {what}) is in use: stop what runs there or pick another "
                f"with {option}")
    stack = Stack(run_dir)
    previous_sigterm = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        redis_url, queue_mode = _redis(stack, redis_port, run_dir)
        env = demo_environment(port, sandbox_port, redis_url, queue_mode, run_dir)
        run_step("creating the database", _hub("db", "upgrade"), env, run_dir)
        seed(env, run_dir)
        callback = f"http://127.0.0.1:{port}/integrations/wecp_lever/connect/callback"
        sandbox = stack.start("sandbox", _hub("lever-sandbox", "--port", str(sandbox_port),
                                              "--client-id", SANDBOX_CLIENT_ID,
                                              "--client-secret", SANDBOX_CLIENT_SECRET,
                                              "--redirect-uri", callback), env)
        web = stack.start("web", gunicorn_argv(port), env)
        if queue_mode == "rq":
            for i in range(workers):
                stack.start(f"worker-{i + 1}", _hub("worker"), env)
        wait_http(f"http://127.0.0.1:{sandbox_port}/", proc=sandbox, log=run_dir / "sandbox.log")
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=web, log=run_dir / "web.log")
        if scripted:
            from .demo_journey import run_journey

            ok = run_journey(hub_url=f"http://127.0.0.1:{port}",
                             sandbox_url=f"http://127.0.0.1:{sandbox_port}", env=env)
            sys.exit(0 if ok else 1)
        _print_welcome(port, sandbox_port, run_dir)
        while True:
            time.sleep(1)
            dead = stack.dead()
            if dead:
                raise click.ClickException(f"{', '.join(dead)} stopped; see {run_dir}/<name>.log")
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous_sigterm)


def _redis(stack: Stack, port: int, run_dir: Path) -> tuple[str, str]:
    url = os.environ.get("REDIS_URL")
    if url:
        if not redis_answers(url):
            raise click.ClickException(f"REDIS_URL={url} does not answer")
        return url, "rq"
    url = f"redis://127.0.0.1:{port}/0"
    if redis_answers(url):
        return url, "rq"
    binary = shutil.which("redis-server")
    if binary:
        if port_in_use(port):
            raise click.ClickException(f"port {port} is in use but is not Redis: use --redis-port")
        stack.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], dict(os.environ))
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if time.monotonic() > deadline:
                raise click.ClickException(f"redis-server did not start; see {run_dir}/redis.log")
            time.sleep(0.1)
        return url, "rq"
    click.secho("!" * 78 + "\n!! No Redis and no redis-server: jobs run INSIDE the web process.\n"
                "!! Nothing survives a restart. Install redis-server for the real thing.\n"
                + "!" * 78,
                fg="yellow", bold=True, err=True)
    return url, "inline"


def _print_welcome(port: int, sandbox_port: int, run_dir: Path) -> None:
    click.secho("\nWeCP Integration Hub demo is running", bold=True)
    click.echo(f"""
  Hub             http://127.0.0.1:{port}/          sign in: {DEMO_ADMIN} / {DEMO_PASSWORD}
  Lever sandbox   http://127.0.0.1:{sandbox_port}/          sign in: olivia@acme.example / sandbox
  Email outbox    http://127.0.0.1:{port}/dev/outbox
  Job dashboard   http://127.0.0.1:{port}/admin/rq
  Logs            {run_dir}/*.log

Next steps:
  1. Settings › Integrations › Lever › Connect, sign in to the sandbox and Accept.
  2. Tests › "Sample: Python basics" › Link job posting from Lever: pick a posting and the
     "Assessment" stage.
  3. In the sandbox, open that posting's pipeline and move a candidate to "Assessment".
  4. Open the invitation in the email outbox, take the test, then see the note in the sandbox.

Ctrl-C stops everything.""")


@click.command("demo-seed")
@with_appcontext
def demo_seed_command():
    """Create the demo organization, admin and a sample test (idempotent)."""
    from .assessments.demo import seed_sample_test
    from .auth import create_user
    from .extensions import db
    from .models import User

    user = db.session.scalar(db.select(User).filter_by(email=DEMO_ADMIN))
    if user is None:
        user = create_user(DEMO_ORG, DEMO_ADMIN, DEMO_PASSWORD, "admin", "Demo Admin")
    seed_sample_test(user.organization_id)
    db.session.commit()


def init_app(app) -> None:
    app.cli.add_command(demo_command)
    app.cli.add_command(demo_seed_command)
