"""Metrics for the people who run the hub: what an operator's Prometheus scrapes at ``/metrics``.

Counted where it happens, with bounded labels only (a plugin key, a queue, a job's registered
name, an HTTP status, an outcome word; never an organization or a connection):

- ``hub_webhook_deliveries_total{plugin,outcome}``: intake, by the answer given;
- ``hub_job_runs_total{job,status}`` and ``hub_job_duration_seconds{job}``: every job a worker ran;
- ``hub_provider_calls_total{plugin,code}``: every call to a provider, 429 included;
- ``hub_emails_total{outcome}``: emails sent, kept in the outbox, failed;
- ``hub_scheduler_tick_seconds``: each tick of a worker's scheduler thread.

Read at scrape time (one fleet-wide answer, from Redis and the database, whichever process is
scraped): ``hub_queue_depth{queue}``, ``hub_queue_oldest_job_age_seconds{queue}`` and
``hub_durable_work{kind,status}``.

gunicorn's processes and each worker's two processes count into files of one directory per
machine (prometheus_client's multiprocess mode) when ``PROMETHEUS_MULTIPROC_DIR`` names it, set
before the processes start and emptied when they all start (``sandboxes.stack`` does both); a
scrape of the web then adds up the machine's processes. Without it each process counts alone.

Who may scrape: a signed-in operator, or a caller presenting ``HUB_METRICS_TOKEN`` as a bearer;
anyone else gets 404, as for the operators' job dashboard.
"""
from __future__ import annotations

import hmac
import os
import threading
import time

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, g, has_request_context, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

bp = Blueprint("metrics", __name__)

WEBHOOK_DELIVERIES = Counter("hub_webhook_deliveries_total", "Webhook deliveries received, by the answer given",
                             ["plugin", "outcome"])
JOB_RUNS = Counter("hub_job_runs_total", "Job runs by their status after the run (finished, failed, "
                   "scheduled: given back or retried)", ["job", "status"])
JOB_DURATION = Histogram("hub_job_duration_seconds", "Wall time of each job run", ["job"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
PROVIDER_CALLS = Counter("hub_provider_calls_total", "HTTP calls to providers by status code", ["plugin", "code"])
EMAILS = Counter("hub_emails_total", "Emails by outcome (sent, outbox, failed)", ["outcome"])
SCHEDULER_TICK = Histogram("hub_scheduler_tick_seconds", "Wall time of each scheduler tick",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30))

_local = threading.local()


def running_plugin(plugin_key: str | None) -> None:
    """The plugin whose job this thread runs now (the worker sets it for each job)."""
    _local.plugin = plugin_key


def current_plugin() -> str:
    """The plugin on whose behalf this thread works: its job's, or its request's blueprint's."""
    plugin = getattr(_local, "plugin", None)  # from a registered job's name: bounded
    if plugin is None and has_request_context() and request.blueprint:
        from .registry import all_plugins

        key = request.blueprint.split(".")[0].removesuffix("_api")
        plugin = key if key in all_plugins() else None
    return plugin or "hub"


def plugin_of_job(name: str) -> str | None:
    """``plugins.<key>.…`` → ``<key>``; the hub's own jobs have none."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "plugins" else None


def job_label(name: str) -> str:
    """A registered job's name, else ``other`` (a label never takes a value from outside)."""
    from .jobs import registered_jobs

    return name if name in registered_jobs() else "other"


def count_provider_response(response, *args, **kwargs):
    """A ``requests`` response hook (``hub.http``): one count per call to a provider."""
    PROVIDER_CALLS.labels(current_plugin(), str(response.status_code)).inc()


class LiveCollector:
    """Queue depth and oldest job age per queue, and durable work by kind and status, read from
    Redis and the database when scraped (the same fleet-wide answer from any process)."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        from .jobs import QUEUES, get_queue
        from .outbox import FAILED, OPEN, active_kinds

        depth = GaugeMetricFamily("hub_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        age = GaugeMetricFamily("hub_queue_oldest_job_age_seconds", "How long the queue's first job has waited",
                                labels=["queue"])
        now = time.time()
        for name in QUEUES:
            queue = get_queue(name)
            depth.add_metric([name], queue.count)
            oldest = 0.0
            first = queue.get_job_ids(0, 1)
            if first:
                job = queue.fetch_job(first[0])
                if job is not None and job.enqueued_at is not None:
                    oldest = max(0.0, now - job.enqueued_at.timestamp())
            age.add_metric([name], oldest)
        yield depth
        yield age
        # Open and failed rows only: done and skipped rows grow with every event ever handled,
        # and counting them at each scrape would cost more as the tables grow.
        work = GaugeMetricFamily("hub_durable_work", "Rows of durable work open or failed, by kind and status",
                                 labels=["kind", "status"])
        from .extensions import db

        for kind in sorted(active_kinds(self.app), key=lambda k: k.name):
            rows = db.session.execute(sa.select(kind.model.status, sa.func.count()).where(
                kind.model.status.in_((*OPEN, FAILED))).group_by(kind.model.status))
            for status, count in rows:
                work.add_metric([kind.name, str(status)], count)
        db.session.rollback()
        yield work


def _allowed() -> bool:
    if g.get("operator") is not None:
        return True
    token = current_app.config.get("HUB_METRICS_TOKEN")
    header = request.headers.get("Authorization", "")
    return bool(token) and header.startswith("Bearer ") and hmac.compare_digest(
        header.removeprefix("Bearer ").encode(), token.encode())


@bp.route("/metrics")
def scrape():
    if not _allowed():
        abort(404)
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
        counted = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        counted = generate_latest(REGISTRY)
    live = CollectorRegistry()
    live.register(LiveCollector(current_app._get_current_object()))
    return Response(counted + generate_latest(live), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Cache-Control": "no-store"})


def serve_metrics(port: int, address: str) -> None:
    """This machine's counted metrics on ``address:port`` (a thread of ``hub worker``), for a
    machine that runs workers and no web process; the fleet-wide gauges are the web's."""
    from prometheus_client import REGISTRY, start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=address, registry=registry)


def init_app(app) -> None:
    app.register_blueprint(bp)
