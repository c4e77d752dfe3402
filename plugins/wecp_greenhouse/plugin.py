"""What the WeCP–Greenhouse integration is, as the hub's plugin contract asks."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa

from hub.plugin import ActivityContext, CardAlert, OAuth2Provider, PartnerKeyProvider, Plugin, SetupStep

from . import followup, push

#: The calls Greenhouse makes, in the order its set-up form lists them
#: (docs/providers/greenhouse.md#assessment-api).
CALLS = ("list_tests", "send_test", "test_status", "response_error")

#: How long the card keeps saying that Greenhouse reported answers it could not use.
ERRORS_SHOWN = timedelta(days=7)

# docs/providers/greenhouse.md#harvest-auth: Greenhouse's OAuth hosts and Harvest's; the local
# stand-in serves the same routes.
HARVEST_ENVIRONMENTS = {
    "production": {"GREENHOUSE_HARVEST_AUTHORIZE_URL": "https://auth.greenhouse.io/authorize",
                   "GREENHOUSE_HARVEST_TOKEN_URL": "https://auth.greenhouse.io/token",
                   "GREENHOUSE_HARVEST_API_BASE_URL": "https://harvest.greenhouse.io"},
    "local": {"GREENHOUSE_HARVEST_AUTHORIZE_URL": "{sandbox}/oauth/authorize",
              "GREENHOUSE_HARVEST_TOKEN_URL": "{sandbox}/oauth/token",
              "GREENHOUSE_HARVEST_API_BASE_URL": "{sandbox}"},
}


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
            # docs/providers/greenhouse.md#assessment-flow (5): a bulk send arrives as many
            # send_test calls of one customer at once, then a test_status per result; the hub's
            # default of 300 a minute refused part of a 300-candidate burst (docs/performance.md).
            calls_per_minute=3000,
            permissions=(
                "list your WeCP tests (to offer them in a job's take-home test stage)",
                "send a test to a candidate (WeCP emails the candidate)",
                "read whether it was completed, its score and the report link",
                "report answers of WeCP it could not use (shown in the activity log)",
            ),
        ),
        OAuth2Provider(
            name=followup.PROVIDER,
            title="Greenhouse Harvest",
            config_prefix="GREENHOUSE_HARVEST",
            # docs/providers/greenhouse.md#harvest-auth: a partner's scopes are set with Greenhouse
            # Partner Support on its client, not asked for at consent; no PKCE; the client
            # authenticates at the token endpoint with HTTP Basic.
            scopes=(),
            pkce=False,
            token_endpoint_auth_method="client_secret_basic",
            # Access tokens last an hour and refresh tokens 24 hours: an idle connection is
            # refreshed every few hours, well inside a day.
            refresh_idle_after=timedelta(hours=4),
            consent_by="a Greenhouse Site Admin (as themselves or with a service account)",
            authorized_apps="Configure › Dev Center › Harvest partner integrations",
            permissions=(
                "read your open jobs and their stages (to pick where candidates who pass go)",
                "read a candidate's application (its stage, just before moving it)",
                "add a note to the candidate (the score and a link to the report)",
                "move candidates who pass to the stage you pick",
            ),
        ),
    )
    partner_blueprint = "plugins.wecp_greenhouse.partner:bp"
    blueprint = "plugins.wecp_greenhouse.views:bp"
    #: The completion PATCH, exactly once per result; with Harvest, the note and the move.
    jobs = (push.mark_complete, followup.write)
    access = {**{f"wecp_greenhouse_partner.{call}": "partner" for call in CALLS},
              "wecp_greenhouse.index": "member", "wecp_greenhouse.harvest_settings": "admin"}
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
        # Harvest v3 (optional per customer): WeCP's partner client, from Greenhouse Partner Support.
        # How long send_test may wait for Harvest to name the job for the email (seconds).
        "GREENHOUSE_HARVEST_SEND_TIMEOUT": 3,
        "GREENHOUSE_HARVEST_CLIENT_ID": "",
        "GREENHOUSE_HARVEST_CLIENT_SECRET": "",
        "GREENHOUSE_HARVEST_AUTHORIZE_URL": None,
        "GREENHOUSE_HARVEST_TOKEN_URL": None,
        "GREENHOUSE_HARVEST_API_BASE_URL": None,
    }
    activity_job_label = "Job"
    activity_kinds = {"invitation": "Test sent", "completion": "Completed", "result": "Result to Greenhouse",
                      "greenhouse_error": "Greenhouse error", "harvest": "Note or move"}

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
        sandbox = config["GREENHOUSE_SANDBOX_URL"].rstrip("/")
        for name, value in HARVEST_ENVIRONMENTS[env].items():
            if not config.get(name):
                config[name] = value.format(sandbox=sandbox)

    def production_problems(self, config) -> list[str]:
        problems = []
        if config.get("GREENHOUSE_ENV") == "local":
            problems.append("GREENHOUSE_ENV must be production (local is the development stand-in)")
        # The card offers Harvest to every customer: without WeCP's partner client its Connect
        # could only fail at Greenhouse.
        for name in ("GREENHOUSE_HARVEST_CLIENT_ID", "GREENHOUSE_HARVEST_CLIENT_SECRET"):
            if not config.get(name):
                problems.append(f"{name} is not set (WeCP's Harvest partner client, from Greenhouse Partner Support)")
        return problems

    def check_connection(self, connection) -> None:
        """Harvest: one cheap read with the new tokens. The partner key needs no check."""
        if connection.provider == followup.PROVIDER:
            from . import harvest

            harvest.check(connection.id)

    def partner_error(self, status: int, message: str) -> dict:
        # docs/providers/greenhouse.md#assessment-errors: no shape is specified; ours is documented.
        return {"error": message}

    def hints(self, connection) -> list[str]:
        """The addresses to give Greenhouse, until it has called one of them."""
        from hub.partners import partner_urls

        if connection.provider == followup.PROVIDER or connection.last_used_at is not None:
            return []
        urls = dict(partner_urls(self))
        return ["Greenhouse needs these addresses with the key: "
                + "; ".join(f"{call}: {urls[call]}" for call in CALLS if call in urls) + "."]

    def setup_steps(self, connection) -> list[SetupStep]:
        """Greenhouse lists the tests → sends one → WeCP tells it of a result, each seen in the data."""
        from hub.extensions import db
        from hub.outbox import DONE

        from .models import Completion, HarvestWrite, Interview

        if connection.provider == followup.PROVIDER:
            picked = bool(followup.moves_of(connection))
            written = db.session.scalar(db.select(HarvestWrite.id).filter_by(
                connection_id=connection.id, status=DONE).limit(1)) is not None
            return [
                SetupStep("Stages picked for candidates who pass", picked,
                          "" if picked else "Optional: open Activity and settings, then Change…, and pick per job "
                          "the stage candidates who pass move to."),
                SetupStep("First note or move written in Greenhouse", written,
                          "" if written else "When a candidate completes a test sent from Greenhouse, WeCP writes "
                          "the score as a note on them."),
            ]
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
        """Greenhouse reported answers it could not use (``response_error``) in the last week; for
        Harvest, notes or moves that failed for good in the last week."""
        from flask import url_for

        from hub.activity import ActivityLine
        from hub.extensions import db
        from hub.models import utcnow

        harvest = connection.provider == followup.PROVIDER
        lines = db.session.execute(db.select(db.func.count(ActivityLine.id), db.func.max(ActivityLine.created_at))
                                   .where(ActivityLine.organization_id == connection.organization_id,
                                          ActivityLine.plugin_key == self.key,
                                          ActivityLine.kind == ("harvest" if harvest else "greenhouse_error"),
                                          ActivityLine.status == "failed" if harvest else sa.true(),
                                          ActivityLine.created_at >= utcnow() - ERRORS_SHOWN)).one()
        count, last = lines
        if not count:
            return []
        if harvest:
            return [CardAlert(
                f"{count} note(s) or move(s) could not be written in Greenhouse in the last week (the last on "
                f"{last:%d %b %H:%M} UTC). The results are in Greenhouse through the assessment.",
                "Read why in the activity log; Retry them under Work needing attention once fixed.",
                link=url_for("settings.activity", plugin_key=self.key, status="failed"), link_label="Activity log")]
        times = "once" if count == 1 else f"{count} times"
        return [CardAlert(
            f"Greenhouse reported {times} in the last week that it could not use an answer of WeCP "
            f"(the last on {last:%d %b %H:%M} UTC), so a candidate's test or result may be missing there.",
            "Read what Greenhouse said in the activity log, and tell WeCP's support if it goes on.",
            level="error", link=url_for("settings.activity", plugin_key=self.key, status="failed"),
            link_label="Activity log")]

    def activity_jobs(self, organization_id: int) -> list[tuple[str, str]]:
        """The jobs Harvest named at ``send_test``, each by a short digest of its title (the
        Assessment API gives WeCP no job id)."""
        from hub.extensions import db

        from .models import Interview

        titles = db.session.scalars(db.select(Interview.job_title).distinct().where(
            Interview.organization_id == organization_id, Interview.job_title.is_not(None)))
        return sorted(((_job_ref(t), t) for t in titles), key=lambda pair: pair[1].lower())

    def activity_job_subjects(self, organization_id: int, job_ref: str):
        from hub.extensions import db

        from .models import Interview

        titles = [t for ref, t in self.activity_jobs(organization_id) if ref == job_ref]
        return db.select(Interview.id).where(Interview.organization_id == organization_id,
                                             Interview.job_title.in_(titles))

    def activity_context(self, organization_id: int, subject_refs: set) -> dict:
        """Each candidate's test, Greenhouse profile and job (when Harvest named it)."""
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
            context[interview.id] = ActivityContext(job=interview.job_title or "", stage=titles[interview.test_id],
                                                    profile_url=interview.profile_url)
        return context


def _job_ref(title: str) -> str:
    import hashlib

    return hashlib.sha256(title.encode()).hexdigest()[:16]
