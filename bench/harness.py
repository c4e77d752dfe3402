"""Shared benchmark machinery: start PostgreSQL, Redis, gunicorn, workers, the sandbox, an SMTP sink; measure; write JSON."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(ROOT))

from sandboxes.lever.standin import CLIENT_ID as SANDBOX_CLIENT_ID  # noqa: E402
from sandboxes.services import PostgresDatabase, PrivatePostgres, RedisServer, free_port  # noqa: E402,F401
from sandboxes.stack import (  # noqa: E402  (bench modules call these through h.)
    HubStack as _HubStack,
)
from sandboxes.stack import (  # noqa: E402
    Server,
    Stack,
    children_of,
    descendants,
    gunicorn_argv,
    hub_command,
    wait_until,
)

#: Child processes of a benchmark (the stack's process manager).
Procs = Stack
CLK_TCK = os.sysconf("SC_CLK_TCK")


def stop_on_sigterm() -> None:
    """SIGTERM (and SIGINT, even when started in the background) end a benchmark cleanly.

    ``finally`` blocks then stop the servers and workers it started, which a plain SIGTERM
    would leave running.
    """
    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def log(message: str) -> None:
    """Progress on stderr; stdout carries only the one summary line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------------

def close_service(handle) -> None:
    (handle.destroy if isinstance(handle, PrivatePostgres) else handle.drop)()


def postgres(private: bool):
    """(url, handle): a private cluster, or a fresh database on the server that answers."""
    if private:
        cluster = PrivatePostgres()
        return cluster.url, cluster
    database = PostgresDatabase()
    return database.url, database


# --- the hub ----------------------------------------------------------------------------------

def hub_config(database_url: str, redis_url: str, base_url: str, **extra) -> dict:
    """create_app overrides of a benchmark hub (development env: plain http on 127.0.0.1)."""
    from hub.crypto import generate_key

    config = {
        "HUB_ENV": "development",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HUB_ENCRYPTION_KEYS": [generate_key()],
        "HUB_BASE_URL": base_url,
        "HUB_PLUGINS": ["plugins.wecp_lever"],
    }
    config.update(extra)
    return config


def make_app(config: dict):
    """The hub app of this controller process, with the schema migrated."""
    from hub import create_app, schema

    app = create_app(config)
    with app.app_context():
        schema.upgrade(app)
    return app


def hub_env(app, **extra) -> dict:
    """Environment for `gunicorn wsgi:app` and `hub worker` that builds the same app as ``app``."""
    from tests.workers import worker_env

    env = worker_env(app, **extra)
    env.setdefault("HUB_ENV", "development")
    return env


def start_gunicorn(procs: Stack, name: str, target: str, env: dict, *, workers: int, threads: int,
                   port: int | None = None, health: str = "/healthz") -> Server:
    """``gunicorn target`` with ``workers`` processes (gthread when ``threads`` > 1, as the stack)."""
    port = port or free_port()
    argv = gunicorn_argv(port, workers, "--graceful-timeout", "5", threads=threads)
    proc = procs.start(name, argv[:-1] + [target], env)
    wait_http(f"http://127.0.0.1:{port}{health}", proc=proc, name=name, procs=procs)
    # gunicorn answers from its first worker; wait until all of them are up.
    deadline = time.monotonic() + 30
    while len(children_of(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    return Server(proc, port)


def start_workers(procs: Stack, env: dict, count: int, *args: str, prefix: str = "worker") -> list:
    started = []
    for _ in range(count):
        name = f"{prefix}-{len([n for n in procs.procs if n.startswith(prefix)]) + 1}-{secrets.token_hex(2)}"
        rq_name = f"{name}-{secrets.token_hex(3)}"
        proc = procs.start(name, hub_command("worker", "--name", rq_name, *args), env)
        proc.rq_name = rq_name
        started.append(proc)
    return started


def wait_workers_ready(redis_url: str, count: int, procs: Procs | None = None, timeout: float = 60) -> None:
    """Wait until ``count`` RQ workers are registered in Redis (a worker exits if Redis is down at start)."""
    import redis
    from rq import Worker

    connection = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while Worker.count(connection=connection) < count:
        if procs is not None and procs.dead():
            raise RuntimeError(f"{procs.dead()} exited early:\n{procs.tail(procs.dead()[0])}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers registered within {timeout:.0f}s")
        time.sleep(0.2)


def wait_worker_named(redis_url: str, name: str, procs: Procs, timeout: float = 60) -> None:
    """Wait until the RQ worker called ``name`` is registered (fail early if a process died).

    ``hub worker --name N`` registers its work process as ``N.<generation>``."""
    import redis
    from rq import Worker

    connection = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while not any(w.name == name or w.name.startswith(name + ".") for w in Worker.all(connection=connection)):
        if procs.dead():
            raise RuntimeError(f"{procs.dead()} exited early:\n{procs.tail(procs.dead()[0])}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not register within {timeout:.0f}s")
        time.sleep(0.2)


def rq_snapshot(stack) -> dict:
    """What RQ and the worker processes look like now: for a scenario that timed out."""
    from rq import Worker

    from hub.jobs import QUEUES, get_queue, get_redis

    with stack.app.app_context():
        workers = [{"name": w.name, "state": str(w.get_state()), "job": w.get_current_job_id(),
                    "last_heartbeat": str(w.last_heartbeat)} for w in Worker.all(connection=get_redis())]
        queues = {}
        for name in QUEUES:
            q = get_queue(name)
            queues[name] = {"queued": q.job_ids[:20], "started": q.started_job_registry.get_job_ids()[:20],
                            "scheduled": q.scheduled_job_registry.get_job_ids()[:20]}
    processes = {p.rq_name: {"pid": p.pid, "alive": p.poll() is None, "children": children_of(p.pid),
                             "log_tail": stack.procs.tail(p.name, 1500)} for p in stack.workers}
    return {"workers": workers, "queues": queues, "processes": processes}


def wait_http(url: str, *, proc=None, name: str = "", procs: Procs | None = None,
              timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{procs.tail(name) if procs else ''}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


#: Short timings so a scenario takes a minute or two, not the production intervals.
FAST = {
    # Every simulated candidate and client of a benchmark calls from 127.0.0.1.
    "HUB_LINK_LOOKUPS_PER_MINUTE": 10**6,
    "HUB_API_CALLS_PER_MINUTE": 10**6,
    "HUB_SCHEDULER_TICK": 0.5,
    "HUB_SWEEP_AFTER_SECONDS": 3,
    "HUB_PERIODIC_INTERVALS": {"hub.outbox.sweep": 2},
    "HUB_JOB_MONITORING_INTERVAL": 1,
    "HUB_JOB_HEARTBEAT_GRACE": 3,
    # Growing like production's (5 s … 15 min) but shorter; together they outlast a 30 s outage.
    "HUB_RETRY_INTERVALS": [2, 5, 10, 20, 40, 60],
    "LEVER_TIMEOUT": 10,
}


class HubStack(_HubStack):
    """The one process stack, as a benchmark wants it: started at once, FAST timings, the
    sandbox as a process of its own, a private Redis and optionally a private PostgreSQL."""

    def __init__(self, name: str, *, private_pg: bool = False, sandbox: bool = False,
                 web: bool = True, workers: int = 2, smtp: bool = False, **config):
        super().__init__(run_dir(name), database="private" if private_pg else None,
                         sandboxes="process" if sandbox else None, smtp=smtp, web=web,
                         workers=workers, config={**FAST, **config}, plugins=["plugins.wecp_lever"])
        self.start()
        wait_workers_ready(self.redis_url, workers, self.procs)


# --- connections and deliveries ----------------------------------------------------------------

def known_secret_connection(app, secret: str, org_name: str = "Bench") -> tuple[str, str]:
    """A Lever connection with a known webhook secret, created directly (no OAuth); (id, endpoint id)."""
    from hub.extensions import db
    from tests.workers import make_connection

    with app.app_context():
        conn = make_connection("wecp_lever", org_name=org_name, provider="lever", webhook_secret=secret)
        result = conn.id, conn.endpoint_id
        db.session.remove()
    return result


def sandbox_connection(app, admin, org_name: str, account: str = "acme") -> str:
    """A Lever connection holding real sandbox tokens (as after Connect), not yet set up; its id."""
    from hub.connections import _store_tokens
    from hub.extensions import db
    from hub.models import Connection, Organization, utcnow

    token = admin.mint_tokens(account, SANDBOX_CLIENT_ID)
    with app.app_context():
        org = Organization(name=org_name)
        db.session.add(org)
        db.session.flush()
        conn = Connection(organization_id=org.id, plugin_key="wecp_lever", provider="lever",
                          connected_at=utcnow(), scopes=token.get("scope", ""),
                          external_account_name=account)
        _store_tokens(conn, token)
        db.session.add(conn)
        db.session.commit()
        connection_id = conn.id
        db.session.remove()
    return connection_id


def registered_connection(stack: HubStack, org: str, account: str = "acme") -> tuple[str, str]:
    """A connection with sandbox tokens whose webhook is registered (the on-connect job, run here)."""
    from hub.connections import webhook_url
    from hub.models import Connection
    from plugins.wecp_lever.jobs import register_webhook

    conn_id = sandbox_connection(stack.app, stack.admin, org, account)
    with stack.app.app_context():
        assert register_webhook(conn_id) == {"outcome": "webhook_ready", "status": "done", "created": True}
    url = stack.query(lambda db: webhook_url(db.session.get(Connection, conn_id)))
    return conn_id, url


def link_a_test(stack: HubStack, conn_id: str, account: str = "acme",
                admin_email: str = "bench-admin@wecp.example") -> tuple[str, str]:
    """The sample WeCP test linked to a published posting and a stage; (posting id, stage id)."""
    from hub.assessments.demo import seed_sample_test
    from hub.auth import create_user
    from hub.extensions import db
    from hub.models import Connection, Organization
    from plugins.wecp_lever.links import create_link

    account = stack.admin.state(account)
    posting = next(p for p, s in account["postings"].items() if s == "published")
    stage = next(s for s in account["stages"] if s not in ("lead-new", "applicant-new"))
    with stack.app.app_context():
        org_id = db.session.get(Connection, conn_id).organization_id
        org_name = db.session.get(Organization, org_id).name
        user = create_user(org_name, admin_email, "bench-password-0123", "admin")
        test = seed_sample_test(org_id)
        db.session.flush()
        create_link(org_id, user.id, test.id, posting, stage)
        db.session.commit()
        db.session.remove()
    return posting, stage


def add_candidates(stack, posting: str, count: int, prefix: str, account: str = "acme") -> dict[str, str]:
    """``count`` new candidates at applicant-new; {opportunity id: email}."""
    emails = [f"{prefix}-{i}@candidates.example" for i in range(count)]
    ids = stack.admin.add_candidates(account, posting, "applicant-new", candidates=[
        {"name": f"Bench {prefix} {i}", "emails": [email]} for i, email in enumerate(emails)])
    return dict(zip(ids, emails))


def invitations(stack) -> dict[str, int]:
    """Invitations of the Lever source by opportunity id (a count above 1 is a duplicate)."""
    from hub.assessments.models import Invitation

    def read(db):
        found: dict[str, int] = {}
        for ref in db.session.scalars(db.select(Invitation.source_ref).filter_by(source="wecp_lever")):
            found[ref] = found.get(ref, 0) + 1
        return found
    return stack.query(read)


def mailed(stack) -> dict[str, list[float]]:
    """Arrival times of the emails at the SMTP server, by recipient."""
    found: dict[str, list[float]] = {}
    for message in list(stack.smtp.messages):
        for rcpt in message.envelope_recipients:
            found.setdefault(rcpt.lower(), []).append(message.received_at)
    return found


def sign(secret: str, token: str, triggered_at: int) -> str:
    # Lever docs (/developer/documentation#webhooks): hex HMAC-SHA256 of token + triggeredAt.
    return hmac.new(secret.encode(), (token + str(triggered_at)).encode(), hashlib.sha256).hexdigest()


def stage_change_body(secret: str, *, token: str | None = None, to_stage: str = "bench-stage") -> tuple[str, bytes]:
    """(token, body) of a signed candidateStageChange dated now, with a fresh token and opportunity."""
    token = token or secrets.token_hex(16)
    triggered_at = int(time.time() * 1000)
    opportunity = str(uuid.uuid4())
    body = {"triggeredAt": triggered_at, "event": "candidateStageChange",
            "signature": sign(secret, token, triggered_at), "token": token,
            "data": {"opportunityId": opportunity, "candidateId": opportunity,
                     "contactId": str(uuid.uuid4()), "fromStageId": "applicant-new",
                     "toStageId": to_stage}}
    return token, json.dumps(body, separators=(",", ":")).encode()


def inbox(app, connection_id: str | None = None) -> dict[str, dict]:
    """Every stored delivery (of one connection) by dedupe key: status, attempts, result."""
    from hub.extensions import db
    from hub.inbox import WebhookDelivery

    with app.app_context():
        query = db.select(WebhookDelivery.dedupe_key, WebhookDelivery.status, WebhookDelivery.attempts,
                          WebhookDelivery.id, WebhookDelivery.error, WebhookDelivery.summary)
        if connection_id:
            query = query.where(WebhookDelivery.connection_id == connection_id)
        rows = db.session.execute(query).all()
        db.session.remove()
    found: dict[str, dict] = {}
    for key, status, attempts, row_id, error, outcome in rows:
        if key in found:  # the UNIQUE constraint should make this impossible
            found[key]["copies"] += 1
            continue
        found[key] = {"status": status, "attempts": attempts, "id": row_id, "copies": 1,
                      "error": error, "result": outcome}
    return found


# --- measuring --------------------------------------------------------------------------------

def cpu_seconds(pid: int, *, waited_children: bool = False) -> float:
    """User + system CPU of a process (plus its reaped children: RQ's work horses)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, so utime (14) is index 11, cutime (16) index 13.
    ticks = int(fields[11]) + int(fields[12])
    if waited_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def memory_kb(pid: int, field: str = "VmHWM") -> int:
    """VmHWM (peak resident set) or VmRSS of a process, in kB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakSampler(threading.Thread):
    """Samples the peak RSS of short-lived processes (RQ work horses) that VmHWM cannot outlive."""

    def __init__(self, pids_fn, interval: float = 0.02):
        super().__init__(name="bench-rss", daemon=True)
        self.pids_fn, self.interval = pids_fn, interval
        self.peak_kb = 0
        self.seen: set[int] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for pid in self.pids_fn():
                self.seen.add(pid)
                self.peak_kb = max(self.peak_kb, memory_kb(pid, "VmHWM"))
            self.stopping.wait(self.interval)

    def stop(self) -> int:
        self.stopping.set()
        self.join(5)
        return self.peak_kb


def percentile(values, q: float) -> float | None:
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine(database_url: str | None = None, redis_url: str | None = None) -> dict:
    """What the numbers were measured on."""
    info = {"nproc": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "memory_gb": None, "postgresql": None, "redis": None}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    if database_url:
        try:
            import psycopg

            with psycopg.connect(database_url, connect_timeout=3) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        except Exception:
            pass
    if redis_url:
        try:
            import redis

            info["redis"] = redis.Redis.from_url(redis_url).info("server")["redis_version"]
        except Exception:
            pass
    from importlib.metadata import version

    for package in ("gunicorn", "rq", "flask", "sqlalchemy", "psycopg"):
        try:
            info[package] = version(package)
        except Exception:
            info[package] = None
    wrk = shutil.which("wrk")
    info["wrk"] = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split(" [")[0] \
        if wrk else None
    return info


def write_result(name: str, result: dict, out: str | None = None) -> Path:
    """Write the JSON result (default bench/results/<name>-<time>.json) and return its path."""
    result.setdefault("finished_at", datetime.now(UTC).isoformat(timespec="seconds"))
    if out:
        path = Path(out)
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return path


def run_dir(name: str) -> Path:
    """Where a benchmark's process logs go (kept after the run, git-ignored)."""
    path = RESULTS_DIR / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_first_reconciliations(stack, connection_ids: list[str], timeout: float = 120) -> None:
    """Wait until each connection's first periodic reconciliation ran (it runs as soon as the
    connection exists; a benchmark that moves candidates wants it out of the way)."""
    from hub.jobs import get_queue

    def done():
        with stack.app.app_context():
            finished = get_queue("sync").finished_job_registry.get_job_ids()
        return all(any("reconcile_postings" in job_id and conn in job_id for job_id in finished)
                   for conn in connection_ids)
    wait_until(done, timeout, 0.5, "the first reconciliation of every connection")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, its reaped children (RQ work horses) and its live descendants."""
    return cpu_seconds(pid, waited_children=True) + sum(cpu_seconds(p) for p in descendants(pid))


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was around a run."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_cpu_seconds() -> dict:
    """CPU seconds the whole machine spent busy and idle since boot (/proc/stat), to see how
    much of it other work took during a measurement."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return {"busy": (sum(fields[:8]) - idle) / CLK_TCK, "idle": idle / CLK_TCK}


# --- fault scenarios: the hub as a browser sees it, stopping and starting it, Lever's call log --

#: The hub admin that ``link_a_test`` creates, for scenarios that sign in like a person.
BENCH_ADMIN = ("bench-admin@wecp.example", "bench-password-0123")
#: The shipped sandbox seed's Super Admin of account ``acme`` (the one who may consent).
LEVER_ADMIN = ("olivia@acme.example", "sandbox")


def hub_browser(stack: HubStack, email: str = BENCH_ADMIN[0], password: str = BENCH_ADMIN[1]):
    """A requests.Session signed in to the gunicorn hub as that user (a person's browser)."""
    import requests

    from sandboxes.journey import sign_in

    browser = requests.Session()
    sign_in(browser, stack.hub_url, email, password)
    return browser


def card_status(stack: HubStack, browser, plugin_key: str = "wecp_lever") -> str | None:
    """The status the Integrations page shows on the plugin's card ("Active", "Revoked", …)."""
    import re

    html = browser.get(stack.web.url + "/settings/integrations", timeout=30).text
    match = re.search(rf'id="integration-{plugin_key}" data-status="([^"]+)"', html)
    return match.group(1) if match else None


def connect_through_consent(stack: HubStack, browser, lever_user: tuple[str, str] = LEVER_ADMIN) -> str:
    """Connect (or reconnect) Lever as an admin does: Connect, sign in at Lever, Accept, callback
    (the journey's step); every request goes to the gunicorn hub or the sandbox process."""
    from sandboxes.lever.journey import connect_lever

    connect_lever(browser, stack.hub_url, stack.sandbox_url, lever_user)
    return "connected"


def stop_at_once(procs: Procs, victims: list[subprocess.Popen], timeout: float = 15) -> None:
    """SIGTERM to every process group at once (as `systemctl stop` of a whole host), SIGKILL
    to what is still running after ``timeout``; one slow process does not hold up the others."""
    for proc in victims:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in victims:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    procs.procs = {n: p for n, p in procs.procs.items() if p not in victims}


def close_quickly(stack: HubStack) -> None:
    """``stack.close()`` after stopping every child process at once (the test suite waits less)."""
    stop_at_once(stack.procs, list(stack.procs.values()))
    stack.close()


def stop_hub(stack: HubStack) -> None:
    """Stop gunicorn and every `hub worker` together (SIGTERM, then SIGKILL): the hub is down."""
    stop_at_once(stack.procs, [stack.web.proc, *stack.workers])
    stack.workers = []


def start_hub(stack: HubStack, workers: int = 2) -> None:
    """Start ``workers`` `hub worker`s and gunicorn again on the same port, side by side."""
    stack.workers = start_workers(stack.procs, stack.env, workers)
    stack.web = start_gunicorn(stack.procs, "web", "wsgi:app", stack.env, workers=2, threads=4,
                               port=stack.web.port)
    wait_workers_ready(stack.redis_url, workers, stack.procs)


def last_request_seq(admin) -> int:
    return max([r["seq"] for r in admin.requests_log()] or [0])


def max_in_window(times_ms, window_ms: int) -> int:
    """The most timestamps in any window of ``window_ms`` (sliding, not calendar seconds)."""
    times, most, lo = sorted(times_ms), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_ms:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def stage_changes(stack) -> dict[str, list[tuple[str, float]]]:
    """How and when (epoch s) each acted-on move was heard of: ``webhook`` or ``reconcile``."""
    from plugins.wecp_lever.models import StageChange

    def read(db):
        found: dict[str, list[tuple[str, float]]] = {}
        for opp, via, at in db.session.execute(db.select(StageChange.opportunity_id, StageChange.via,
                                                         StageChange.created_at)):
            found.setdefault(opp, []).append((via, epoch(at)))
        return found
    return stack.query(read)


def epoch(moment) -> float | None:
    """Epoch seconds of a datetime; naive ones are UTC (the hub's and RQ's convention)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def failed_jobs(stack) -> dict[str, int]:
    """Jobs in each queue's failed registry (failed for good: no retry left)."""
    from hub.jobs import QUEUES, get_queue

    with stack.app.app_context():
        return {name: get_queue(name).failed_job_registry.count for name in QUEUES}


def queues_idle(stack) -> bool:
    """Nothing queued, running or waiting for a retry in any queue."""
    from hub.jobs import QUEUES, get_queue

    with stack.app.app_context():
        for name in QUEUES:
            queue = get_queue(name)
            if queue.count or queue.started_job_registry.count or queue.scheduled_job_registry.count:
                return False
    return True
