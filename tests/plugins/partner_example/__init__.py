"""A tiny integration of the second shape, only in the tests: the provider calls WeCP.

WeCP issues a partner key (``PartnerKeyProvider``); the provider lists the organization's tests,
asks for one to be sent (a durable push, exactly once per its own reference however often it
retries) and reads its status. Its API is reached with a key the admin pastes
(``PastedKeyProvider``), so the card has two connections of two kinds. Everything the hub gives
such a plugin is exercised through it.
"""
from flask import Blueprint, abort, jsonify, request

from hub.extensions import db
from hub.outbox import schedule_once
from hub.partners import caller
from hub.plugin import PartnerKeyProvider, PastedKeyProvider, Plugin

from .work import Push, push

partner = Blueprint("partner_example_partner", __name__)

#: The longest reference the provider may give a send (it is a key of ours afterwards).
MAX_REF = 100


@partner.route("/tests")
def list_tests():
    from hub.assessments.services import list_tests as tests_of

    return jsonify([{"id": str(t.id), "name": t.title} for t in tests_of(caller().organization_id)])


@partner.route("/send", methods=["POST"])
def send():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("ref"), str) \
            or not 0 < len(body["ref"]) <= MAX_REF or not isinstance(body.get("email"), str):
        abort(400, description="expected {\"ref\": str, \"email\": str}")
    who = caller()
    stored = schedule_once(push, Push(connection_id=who.connection_id, ref=body["ref"]))
    db.session.commit()
    row = db.session.scalar(db.select(Push).filter_by(connection_id=who.connection_id, ref=body["ref"]))
    return jsonify({"id": row.id, "new": stored}), 201 if stored else 200


@partner.route("/status")
def status():
    ident = request.args.get("id", "")
    if not ident.isdigit() or len(ident) > 18:
        abort(400, description="id must be a number")
    # The caller's own rows only: another organization's id is unknown here.
    row = db.session.scalar(db.select(Push).filter_by(id=int(ident), connection_id=caller().connection_id))
    if row is None:
        abort(404, description="no such send")
    return jsonify({"id": row.id, "status": row.status})


class PartnerExample(Plugin):
    key = "partner_example"
    title = "Partner Example"
    description = "Sends a test when its ATS asks."
    providers = (PartnerKeyProvider(
        name="partner", title="Partner ATS", scheme="basic",
        hand_over="Give it to the Partner ATS's support, with the addresses below.",
        permissions=("list your tests", "send a test to a candidate", "read whether it was sent")),
        # Its API, for writing results back, is reached with a key its admin pastes.
        PastedKeyProvider(
            name="api", title="Partner ATS API", key_label="API key", subdomain_label="Subdomain",
            where_to_find="Create it under Settings › API keys, with permission to write notes."),
    )
    partner_blueprint = "tests.plugins.partner_example:partner"
    jobs = (push,)
    access = {"partner_example_partner.list_tests": "partner",
              "partner_example_partner.send": "partner",
              "partner_example_partner.status": "partner"}

    def check_connection(self, connection) -> None:
        from hub.connections import access_token

        # The stand-in provider accepts keys starting "good-" (a real one answers a cheap call).
        if not access_token(connection.id).startswith("good-"):
            raise RuntimeError("401 Unauthorized")
        connection.external_account_name = f"{connection.data['subdomain']} workspace"

    def partner_error(self, status: int, message: str) -> dict:
        # The provider's own error shape, as a real one documents it.
        return {"errors": [{"message": message}], "status": status}


plugin = PartnerExample()
