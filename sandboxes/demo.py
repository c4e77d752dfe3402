"""The demo: the whole hub on one machine, with a sandbox for each integration, seeded.

``python -m sandboxes.demo`` (what ``./run demo`` runs) starts Redis (or uses ``REDIS_URL``),
one sandbox per loaded plugin that has one (``sandboxes/<ats>/standin.py``), the hub under
gunicorn and its workers, on SQLite; prints where to go and what to do; Ctrl-C stops it all.
``--scripted`` walks every integration's journey instead and exits non-zero on a failure.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path

import click

from . import standins
from .journey import DEMO_ADMIN, DEMO_OPERATOR, DEMO_OPERATOR_PASSWORD, DEMO_ORG, DEMO_PASSWORD
from .stack import (
    ROOT,
    HubStack,
    Stack,
    StackError,
    WaitTimeout,
    _stop_on_sigterm,
    port_in_use,
    redis_answers,
    start_redis,
)


def plugin_keys() -> list[str]:
    """The keys of the plugins the hub will load (HUB_PLUGINS, else the shipped default)."""
    from hub.config import _default_plugins

    paths = [p.strip() for p in os.environ.get("HUB_PLUGINS", "").split(",") if p.strip()] or _default_plugins()
    return [p.rsplit(".", 1)[-1] for p in paths]


@click.group(invoke_without_command=True)
@click.option("--port", default=5000, show_default=True, help="Port of the hub.")
@click.option("--sandbox-port", default=5001, show_default=True,
              help="Port of the first sandbox (the next ones take the ports after it).")
@click.option("--redis-port", default=6379, show_default=True,
              help="Port of the Redis to use or start (ignored when REDIS_URL is set).")
@click.option("--workers", default=1, show_default=True, help="RQ worker processes.")
@click.option("--scripted", is_flag=True, help="Run every integration's journey without a person, then stop.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=ROOT / "instance" / "demo", show_default="instance/demo",
              help="Where the demo keeps its SQLite database and logs.")
@click.pass_context
def main(ctx, port, sandbox_port, redis_port, workers, scripted, data_dir):
    """Start Redis, the sandboxes, the hub and a worker, seeded, and print where to go."""
    if ctx.invoked_subcommand is not None:
        return
    run_dir = data_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    sandboxes = [(s, sandbox_port + i) for i, s in enumerate(standins(plugin_keys()))]
    ports = [(port, "hub", "--port")] + [(p, s.TITLE, "--sandbox-port") for s, p in sandboxes]
    if len({p for p, _, _ in ports}) != len(ports):
        raise click.UsageError("--port must differ from the sandboxes' ports")
    for p, what, option in ports:
        if port_in_use(p):
            raise click.ClickException(f"port {p} (for the {what}) is in use: stop what runs there "
                                       f"or pick another with {option}")
    sigterm = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    services = Stack(run_dir)  # a redis-server of the demo's own, when one must be started
    stack = None
    try:
        redis_url, queue_mode = _redis(services, redis_port)
        stack = HubStack(run_dir, database=os.environ.get("DATABASE_URL") or f"sqlite:///{run_dir / 'demo.sqlite3'}",
                         redis_url=redis_url, sandboxes="process", smtp=False, workers=workers,
                         port=port, sandbox_port=sandbox_port, config={"HUB_QUEUE_MODE": queue_mode},
                         keep_sandbox_state=True,
                         plugins=[p.strip() for p in os.environ.get("HUB_PLUGINS", "").split(",") if p.strip()]
                         or None)
        stack.start()
        seed(stack.app)
        settings_files = write_settings(stack.settings(), run_dir)
        sandboxes = [(h.standin, h.url) for h in stack.sandboxes.values()]
        if scripted:
            ok = True
            for standin, url in sandboxes:
                click.secho(f"\n{standin.TITLE}", bold=True)
                ok = standin.journey(hub_url=stack.hub_url, sandbox_url=url) and ok
            sys.exit(0 if ok else 1)
        _print_welcome(stack.hub_url, sandboxes, run_dir, settings_files, _connected(stack.app))
        while True:
            time.sleep(1)
            dead = stack.procs.dead() + services.dead()
            if dead:
                raise click.ClickException(f"{', '.join(dead)} stopped; see {run_dir}/<name>.log")
    except (StackError, WaitTimeout) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        if stack is not None:
            stack.stop()
        services.stop()
        signal.signal(signal.SIGTERM, sigterm)


def _redis(stack: Stack, port: int) -> tuple[str, str]:
    url = os.environ.get("REDIS_URL")
    if url:
        if not redis_answers(url):
            raise click.ClickException(f"REDIS_URL={url} does not answer")
        return url, "rq"
    # Kept in the data directory: a restarted demo keeps everyone signed in and its queue.
    started = start_redis(stack, port, keep_in=stack.run_dir)
    if started:
        return started, "rq"
    click.secho("!" * 78 + "\n!! No Redis and no redis-server: jobs run INSIDE the web process.\n"
                "!! Nothing survives a restart. Install redis-server for the real thing.\n"
                + "!" * 78, fg="yellow", bold=True, err=True)
    return f"redis://127.0.0.1:{port}/0", "inline"


def write_settings(settings: dict[str, str], run_dir: Path) -> list[Path]:
    """The demo's settings as ``export`` lines: in the data directory (to ``source`` in a shell)
    and in the hub's instance folder, where the ``hub`` command looks for a demo (``hub.cli``).
    Readable by this user only: they hold the demo's development secret and key."""
    from hub.cli import demo_settings_path

    text = "# Written by ./run demo: the settings of the demo's hub (`source` this file to use them).\n" + \
        "".join(f"export {name}={shlex.quote(str(value))}\n" for name, value in sorted(settings.items()))
    paths = [run_dir / "hub.env", demo_settings_path()]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text)
    return paths


def _connected(app) -> set[str]:
    """The plugins the demo organization is connected with (from an earlier run of the demo)."""
    from hub.extensions import db
    from hub.models import Connection, User

    with app.app_context():
        user = db.session.scalar(db.select(User).filter_by(email=DEMO_ADMIN))
        return set(db.session.scalars(db.select(Connection.plugin_key).where(
            Connection.organization_id == user.organization_id, Connection.usable))) if user else set()


def _print_welcome(hub_url: str, sandboxes: list, run_dir: Path, settings_files: list[Path],
                   connected: set[str] = frozenset()) -> None:
    click.secho("\nWeCP Integration Hub demo is running", bold=True)
    lines = [f"  Hub             {hub_url}/          sign in: {DEMO_ADMIN} / {DEMO_PASSWORD}"]
    lines += [f"  {s.TITLE:<15} {url}/          sign in: {s.sign_in()}" for s, url in sandboxes]
    lines += [f"  Email outbox    {hub_url}/dev/outbox",
              f"  Job dashboard   {hub_url}/admin/rq/  sign in: {DEMO_OPERATOR} / {DEMO_OPERATOR_PASSWORD}"
              " (an operator)",
              f"  hub command     .venv/bin/hub (e.g. `hub users list`) uses this demo; in another shell "
              f"or folder: source {settings_files[0]}",
              f"  Logs            {run_dir}/*.log"]
    click.echo("\n" + "\n".join(lines))
    for standin, url in sandboxes:
        click.echo(f"\nNext steps ({standin.TITLE}):")
        for n, step in enumerate(standin.next_steps(hub_url, url, connected=standin.PLUGIN_KEY in connected), 1):
            click.echo(f"  {n}. {step}")
    click.echo("\nCtrl-C stops everything.")


def seed(app) -> None:
    """The demo organization, admin, operator and a sample test (idempotent)."""
    from hub.assessments.demo import seed_sample_test
    from hub.auth import create_operator, create_user
    from hub.extensions import db
    from hub.models import Operator, User

    with app.app_context():
        user = db.session.scalar(db.select(User).filter_by(email=DEMO_ADMIN))
        if user is None:
            user = create_user(DEMO_ORG, DEMO_ADMIN, DEMO_PASSWORD, "admin", "Demo Admin")
        if db.session.scalar(db.select(Operator).filter_by(email=DEMO_OPERATOR)) is None:
            create_operator(DEMO_OPERATOR, DEMO_OPERATOR_PASSWORD)
        seed_sample_test(user.organization_id)
        db.session.commit()


@main.command("seed")
def seed_command():
    """Create the demo organization, admin and a sample test (reads the environment)."""
    from hub import create_app

    seed(create_app())


if __name__ == "__main__":
    main()
