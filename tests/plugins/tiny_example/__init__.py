"""A second, tiny integration that exists only in the tests: proof that plugins need no hub edits."""
import hmac
import json
import os
import signal
import time

from flask import Blueprint, render_template

from hub.auth import login_required
from hub.jobs import job
from hub.plugin import (
    BadSignature,
    Done,
    IncomingEvent,
    MalformedPayload,
    PeriodicJob,
    Ping,
    Plugin,
    WebhookSource,
)

bp = Blueprint("tiny_example", __name__, template_folder="templates")

#: Job calls are recorded here by the in-process tests (a worker would write to the database).
CALLS: list = []
#: Memory a ``leak`` payload keeps, as a leaking job would.
LEAKED: list = []


@bp.route("/")
@login_required
def index():
    return render_template("tiny_example/index.html")


def count_ping(delivery, connection):
    """Handle one ping; its one effect is keyed in Redis (SET NX), so a second run does nothing twice.

    Payload options drive the end-to-end tests: ``sleep`` (seconds, to be killed mid-job),
    ``fail`` (raise on the first N runs), ``deaf`` (block the job-timeout signal while sleeping,
    as code stuck outside Python would) and ``leak`` (keep that many MB for the process's life).
    """
    from hub.extensions import get_redis

    delivery_id = delivery.id
    CALLS.append(("count_ping", delivery_id))
    payload = delivery.payload
    key = str(payload["id"])
    r = get_redis()
    runs = r.incr(f"tiny:runs:{key}")
    r.set(f"tiny:pid:{key}", os.getpid())
    if payload.get("leak"):
        LEAKED.append(bytearray(int(payload["leak"]) * 2**20))
    if payload.get("sleep"):
        if payload.get("deaf"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(float(payload["sleep"]))
    if runs <= int(payload.get("fail", 0)):
        raise RuntimeError(f"failing on purpose, run {runs}")
    if r.set(f"tiny:effect:{key}", delivery_id, nx=True):
        r.incr("tiny:effects")
    if payload.get("mail"):
        from hub.mail import queue_email

        queue_email(str(payload["mail"]), "Tiny ping", "A ping came.", idempotency_key=f"tiny:{key}")
    return Done(what="counted")


@job("sync", retry=False)
def tick(connection_id=None):
    CALLS.append(("tick", connection_id))
    from rq import get_current_job

    from hub.extensions import get_redis

    job = get_current_job()
    if job is not None:
        get_redis().rpush("tiny:ticks", job.id)


class TinySource(WebhookSource):
    name = "tiny"

    def handle(self, delivery, connection):
        return count_ping(delivery, connection)

    def receive(self, connection, body, headers):
        # The connection's own secret when it has one (as a real provider's), else a fixed one.
        expected = connection.webhook_secret or "tiny-secret"
        if not hmac.compare_digest(headers.get("X-Tiny-Secret", ""), expected):
            raise BadSignature("wrong secret")
        try:
            payload = json.loads(body)
            if payload.get("ping"):
                raise Ping("a connectivity check")
            return IncomingEvent(event="ping", dedupe_key=str(payload["id"]), payload=payload)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedPayload("expected {\"id\": …}") from exc


from .work import echo  # noqa: E402 (the plugin's durable work, after its helpers)


class TinyPlugin(Plugin):
    key = "tiny_example"
    title = "Tiny Example"
    description = "Counts pings."
    webhook_sources = (TinySource(),)
    jobs = (echo,)
    periodic_jobs = (PeriodicJob(tick, __import__("datetime").timedelta(minutes=1)),)
    blueprint = "tests.plugins.tiny_example:bp"
    access = {"tiny_example.index": "member"}

    def production_problems(self, config) -> list[str]:
        if not str(config.get("TINY_API_KEY", "")).strip():
            return ["TINY_API_KEY is empty: the tiny plugin cannot call its provider"]
        return []


plugin = TinyPlugin()
