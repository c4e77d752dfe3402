"""What the WeCP–Greenhouse integration is, as the hub's plugin contract asks."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from hub.plugin import ActivityContext, CardAlert, PartnerKeyProvider, Plugin, SetupStep

from . import push

#: The calls Greenhouse makes, in the order its set-up form lists them
#: (docs/providers/greenhouse.md#assessment-api).
CALLS = ("list_tests", "send_test", "test_status", "response_error")

#: How long the card keeps saying that Greenhouse reported answers it could not use.
ERRORS_SHOWN = timedelta(days=7)


class WecpGreenhousePlugin(Plugin):
    key = "wecp_greenhouse"
    title = "Greenhouse"
    description = ("Let recruiters send WeCP tests from Greenhouse's take-home test stage; the score "
                   "and the report link appear on the candidate in Greenhouse.")
    providers = (
        PartnerKeyProvider(
            name="greenhouse",
            title="Greenhouse",
            # docs/providers/greenhouse.md#assessment-auth: HTTP Basic, the key as user name.
            scheme="basic",
            # docs/providers/greenhouse.md#assessment-flow: Greenhouse enters the key; there is no
            # screen for it in Greenhouse.
            consent_by="Greenhouse Support enters it for you",
            hand_over=("Greenhouse Support enters the key: open a ticket asking them to enable WeCP "
                       "as your assessment partner, and do not paste the key in the ticket: Support "
                       "sends a secure (SendSafely) link to send it through, then confirms by email."),
            # Greenhouse Support may take days to enter a new key: the old one works meanwhile.
            rotation_overlap=timedelta(days=14),
            permissions=(
                "list your WeCP tests (to offer them in a job's take-home test stage)",
                "send a test to a candidate (WeCP emails the candidate)",
                "read whether it was completed, its score and the report link",
                "report answers of WeCP it could not use (shown in the activity log)",
            ),
        ),
    )
    partner_blueprint = "plugins.wecp_greenhouse.partner:bp"
    #: The completion PATCH, exactly once per result (durable work).
    jobs = (push.mark_complete,)
    access = {f"wecp_greenhouse_partner.{call}": "partner" for call in CALLS}
    config = {
        # production: Greenhouse's hosts; local: the sandbox stand-in (development and tests).
        "GREENHOUSE_ENV": "production",
        "GREENHOUSE_SANDBOX_URL": "http://127.0.0.1:5002",
        # Hosts whose addresses WeCP calls (the completion url) and links to (the candidate's
        # profile): docs/providers/greenhouse.md#mark-complete. Comma-separated host[:port].
        "GREENHOUSE_APP_HOSTS": None,
        # WeCP's partner credential for the completion PATCH, when Greenhouse gives one
        # (docs/providers/greenhouse.md#mark-complete: not documented; sent as HTTP Basic).
        "GREENHOUSE_PATCH_USERNAME": "",
        "GREENHOUSE_PATCH_PASSWORD": "",
        "GREENHOUSE_TIMEOUT": 10,
    }
    activity_kinds = {"invitation": "Test sent", "completion": "Completed", "result": "Result to Greenhouse",
                      "greenhouse_error": "Greenhouse error"}

    def init_app(self, app) -> None:
        from hub.assessments.signals import invitation_completed, result_regraded

        invitation_completed.connect(push.on_invitation_completed)
        result_regraded.connect(push.on_result_regraded)

    def configure(self, config) -> None:
        env = config["GREENHOUSE_ENV"]
        if env not in ("production", "local"):
            raise ValueError(f"GREENHOUSE_ENV must be production or local, not {env!r}")
        hosts = config.get("GREENHOUSE_APP_HOSTS")
        if not hosts:
            # docs/providers/greenhouse.md#mark-complete: Greenhouse's example url is on app.greenhouse.io.
            hosts = urlsplit(config["GREENHOUSE_SANDBOX_URL"]).netloc if env == "local" else "app.greenhouse.io"
        if isinstance(hosts, str):
            hosts = [h.strip().lower() for h in hosts.split(",") if h.strip()]
        config["GREENHOUSE_APP_HOSTS"] = frozenset(hosts)

    def production_problems(self, config) -> list[str]:
        if config.get("GREENHOUSE_ENV") == "local":
            return ["GREENHOUSE_ENV must be production (local is the development stand-in)"]
        return []

    def partner_error(self, status: int, message: str) -> dict:
        # docs/providers/greenhouse.md#assessment-errors: no shape is specified; ours is documented.
        return {"error": message}

    def hints(self, connection) -> list[str]:
        """The addresses to give Greenhouse, until it has called one of them."""
        from hub.partners import partner_urls

        if connection.last_used_at is not None:
            return []
        urls = dict(partner_urls(self))
        return ["Greenhouse needs these addresses with the key: "
                + "; ".join(f"{call}: {urls[call]}" for call in CALLS if call in urls) + "."]

    def setup_steps(self, connection) -> list[SetupStep]:
        """Greenhouse lists the tests → sends one → WeCP tells it of a result, each seen in the data."""
        from hub.extensions import db
        from hub.outbox import DONE

        from .models import Completion, Interview

        listed = bool((connection.data or {}).get("listed_at"))
        sent = db.session.scalar(db.select(Interview.id).filter_by(
            organization_id=connection.organization_id).limit(1)) is not None
        told = db.session.scalar(db.select(Completion.id).filter_by(
            organization_id=connection.organization_id, status=DONE).limit(1)) is not None
        return [
            SetupStep("Greenhouse listed your tests", listed,
                      "" if listed else "In Greenhouse, add the take-home test stage to a job's Hiring Plan "
                      "and choose WeCP: Greenhouse then lists your WeCP tests."),
            SetupStep("First test sent from Greenhouse", sent,
                      "" if sent else "Move a candidate into that stage and click Send Test."),
            SetupStep("First result sent to Greenhouse", told,
                      "" if told else "When a candidate completes the test, WeCP tells Greenhouse, which "
                      "shows the score and the report link."),
        ]

    def alerts(self, connection) -> list[CardAlert]:
        """Greenhouse reported answers it could not use (``response_error``) in the last week."""
        from flask import url_for

        from hub.activity import ActivityLine
        from hub.extensions import db
        from hub.models import utcnow

        lines = db.session.execute(db.select(db.func.count(ActivityLine.id), db.func.max(ActivityLine.created_at))
                                   .where(ActivityLine.organization_id == connection.organization_id,
                                          ActivityLine.plugin_key == self.key,
                                          ActivityLine.kind == "greenhouse_error",
                                          ActivityLine.created_at >= utcnow() - ERRORS_SHOWN)).one()
        count, last = lines
        if not count:
            return []
        times = "once" if count == 1 else f"{count} times"
        return [CardAlert(
            f"Greenhouse reported {times} in the last week that it could not use an answer of WeCP "
            f"(the last on {last:%d %b %H:%M} UTC), so a candidate's test or result may be missing there.",
            "Read what Greenhouse said in the activity log, and tell WeCP's support if it goes on.",
            level="error", link=url_for("settings.activity", plugin_key=self.key, status="failed"),
            link_label="Activity log")]

    def activity_context(self, organization_id: int, subject_refs: set) -> dict:
        """Each candidate's test and Greenhouse profile (the Assessment API names no job)."""
        from hub.assessments.services import get_test
        from hub.extensions import db

        from .models import Interview

        found = db.session.scalars(db.select(Interview).where(
            Interview.organization_id == organization_id, Interview.id.in_(subject_refs)))
        titles: dict[int, str] = {}
        context = {}
        for interview in found:
            if interview.test_id not in titles:
                test = get_test(interview.test_id)
                titles[interview.test_id] = test.title if test else ""
            context[interview.id] = ActivityContext(job="", stage=titles[interview.test_id],
                                                    profile_url=interview.profile_url)
        return context
