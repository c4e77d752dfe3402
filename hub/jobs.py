"""The job queue: named RQ queues, one enqueue helper, the retry policy, and the worker command."""
from __future__ import annotations

import logging
import random

import click
from flask import current_app
from flask.cli import with_appcontext
from rq import Queue, Retry, Worker
from rq.serializers import JSONSerializer

from .extensions import get_redis
from .registry import import_string

log = logging.getLogger("hub.jobs")

#: Queues, most urgent first; a worker listens to all of them in this order.
QUEUES = ("webhooks", "default", "mail", "sync")

#: Default retry policy: growing intervals (seconds) with jitter, applied at enqueue time.
RETRY_INTERVALS = (5, 15, 60, 300, 900)


def retry_policy(intervals=RETRY_INTERVALS, jitter: float = 0.2) -> Retry:
    # Jitter spreads retries of a burst of failures so they do not hit Lever at the same second.
    spread = [max(1, int(i * random.uniform(1 - jitter, 1 + jitter))) for i in intervals]
    return Retry(max=len(spread), interval=spread)


def get_queue(name: str = "default", app=None) -> Queue:
    app = app or current_app
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}; queues are {', '.join(QUEUES)}")
    return Queue(name, connection=get_redis(app), serializer=JSONSerializer,
                 default_timeout=app.config.get("HUB_JOB_TIMEOUT", 300))


def enqueue(func: str, *args, queue: str = "default", job_id: str | None = None,
            retry: Retry | None | bool = True, **options):
    """Enqueue the job function at dotted path ``func`` with JSON-serialisable ids as arguments.

    In ``HUB_QUEUE_MODE=inline`` (the demo's last resort without Redis) the job runs at once in
    this process instead. With ``job_id`` a second enqueue of the same id while the first is
    still known to RQ is ignored, so callers can enqueue freely.
    """
    if current_app.config.get("HUB_QUEUE_MODE") == "inline":
        import_string(func)(*args)
        return None
    if retry is True:
        retry = retry_policy()
    q = get_queue(queue)
    if job_id is not None:
        existing = q.fetch_job(job_id)
        if existing is not None and existing.get_status(refresh=True) in ("queued", "started", "scheduled", "deferred"):
            return existing
    return q.enqueue(func, *args, job_id=job_id, retry=retry or None,
                     failure_ttl=options.pop("failure_ttl", 7 * 24 * 3600), **options)


@click.command("worker")
@click.option("--queues", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues, most urgent first.")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty (tests, one-off runs).")
@click.option("--name", default=None, help="Worker name (default: host and pid).")
@with_appcontext
def worker_command(queues, burst, name):
    """Run an RQ worker (with the scheduler) for the hub's jobs. Run as many as you like."""
    app = current_app._get_current_object()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    worker = Worker([get_queue(n, app) for n in names], connection=get_redis(app),
                    serializer=JSONSerializer, name=name,
                    job_monitoring_interval=app.config.get("HUB_JOB_MONITORING_INTERVAL", 5))
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


def init_app(app) -> None:
    app.cli.add_command(worker_command)
