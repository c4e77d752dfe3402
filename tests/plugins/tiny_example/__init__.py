"""A second, tiny integration that exists only in the tests: proof that plugins need no hub edits."""
import hmac
import json

from flask import Blueprint, render_template

from hub.plugin import IncomingEvent, MalformedPayload, BadSignature, PeriodicJob, Plugin, WebhookSource

bp = Blueprint("tiny_example", __name__, template_folder="templates")

#: Job calls are recorded here by the in-process tests (a worker would write to the database).
CALLS: list = []


@bp.route("/")
def index():
    return render_template("tiny_example/index.html")


def count_ping(delivery_id):
    CALLS.append(("count_ping", delivery_id))
    return "counted"


def tick(connection_id=None):
    CALLS.append(("tick", connection_id))


class TinySource(WebhookSource):
    name = "tiny"
    handler = "tests.plugins.tiny_example.count_ping"

    def receive(self, connection, body, headers):
        if not hmac.compare_digest(headers.get("X-Tiny-Secret", ""), "tiny-secret"):
            raise BadSignature("wrong secret")
        try:
            payload = json.loads(body)
            return IncomingEvent(event="ping", dedupe_key=str(payload["id"]), payload=payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedPayload("expected {\"id\": …}") from exc


class TinyPlugin(Plugin):
    key = "tiny_example"
    title = "Tiny Example"
    description = "Counts pings."
    webhook_sources = (TinySource(),)
    jobs = ("tests.plugins.tiny_example.count_ping",)
    periodic_jobs = (PeriodicJob("tests.plugins.tiny_example.tick", __import__("datetime").timedelta(minutes=1)),)
    blueprint = "tests.plugins.tiny_example:bp"


plugin = TinyPlugin()
