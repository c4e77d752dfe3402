"""What the WeCP–Lever integration is, as the hub's plugin contract asks."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hub.config import endpoint_problem
from hub.plugin import CardAlert, OAuth2Provider, PeriodicJob, Plugin, Setting, SetupStep

from . import activity, flow, jobs
from .webhooks import LeverWebhookSource

# docs/providers/lever.md#oauth: hosts of production and of Lever's own sandbox.
LEVER_ENVIRONMENTS = {
    "production": {
        "LEVER_AUTHORIZE_URL": "https://auth.lever.co/authorize",
        "LEVER_TOKEN_URL": "https://auth.lever.co/oauth/token",
        "LEVER_API_BASE_URL": "https://api.lever.co/v1",
        # Lever docs: the audience carries a trailing slash; without it only offline_access is granted.
        "LEVER_AUDIENCE": "https://api.lever.co/v1/",
        # Where recruiters open a candidate: <app>/candidates/<opportunity id>
        # (docs/providers/lever.md#opportunities, the opportunity's urls.show).
        "LEVER_APP_URL": "https://hire.lever.co",
    },
    "sandbox": {
        "LEVER_AUTHORIZE_URL": "https://sandbox-lever.auth0.com/authorize",
        "LEVER_TOKEN_URL": "https://sandbox-lever.auth0.com/oauth/token",
        "LEVER_API_BASE_URL": "https://api.sandbox.lever.co/v1",
        "LEVER_AUDIENCE": "https://api.sandbox.lever.co/v1/",
        "LEVER_APP_URL": "https://hire.sandbox.lever.co",
    },
}

# docs/providers/lever.md#oauth (scopes): Lever's recommended scopes for assessment partners,
# plus postings and users, which WeCP needs to list postings and pick the note's author.
LEVER_SCOPES = (
    "offline_access",
    "opportunities:write:admin",
    "notes:write:admin",
    "stages:read:admin",
    "tags:read:admin",
    "postings:read:admin",
    "users:read:admin",
    "webhooks:write:admin",
)


class WecpLeverPlugin(Plugin):
    key = "wecp_lever"
    title = "Lever"
    logo = "logo.svg"
    description = ("Invite Lever candidates to a WeCP test when they reach a stage, and save "
                   "their score as a note on the Lever profile.")
    providers = (
        OAuth2Provider(
            name="lever",
            title="Lever",
            config_prefix="LEVER",
            scopes=LEVER_SCOPES,
            # docs/providers/lever.md#oauth: prompt=consent shows the permissions every time.
            authorize_params={"prompt": "consent"},
            authorize_params_from_config={"audience": "LEVER_AUDIENCE"},
            # docs/providers/lever.md#oauth: refresh tokens live about a year and lapse after
            # about 90 days unused; a monthly refresh keeps an idle account connected.
            refresh_idle_after=timedelta(days=30),
            refresh_token_lifetime=timedelta(days=365),
            # docs/providers/lever.md#oauth-revocation: no partner-side revocation is documented;
            # a Super Admin removes the app there.
            authorized_apps="Settings › Integrations and API › Authorized Apps",
            # docs/providers/lever.md#oauth: only a Super Admin can authorize a partner app.
            consent_by="a Lever Super Admin",
            permissions=(
                "read your postings, stages and users (to link a test to a posting's stage)",
                "read and update candidates' opportunities (to read who moved, tag them and, if you "
                "ask, move those who pass)",
                "add notes to opportunities (the score and a link to the report)",
                "create and delete its own webhook (to hear of stage changes)",
                "stay connected while no one is signed in (a refresh token)",
            ),
        ),
    )
    webhook_sources = (LeverWebhookSource(),)
    settings = (
        Setting("tag_invited", "Tag invited candidates “WeCP: invited”", True, bool),
        Setting("tag_results", "Tag results “WeCP: completed” and “WeCP: passed/failed”", True, bool),
        Setting("tag_started", "Tag candidates who started a test “WeCP: started”", False, bool),
        Setting("tag_expired", "Tag candidates whose invitation expired “WeCP: expired”", True, bool),
        Setting("review_from", "Tag “WeCP: needs review” from this score (%)", 0, int),
        Setting("review_to", "… up to (not including) this score (%); the same number as above: never",
                0, int, help="A band between failing and passing scores that a recruiter should look at."),
        Setting("reminder_hours", "Remind candidates who have not started, this many hours before the "
                "deadline (0: never)", 24, int),
        Setting("advance_on_pass_stage", "Move candidates who pass to this stage", "", str,
                help="Picked from your Lever stages; the move is made as the posting's owner."),
    )
    config = {
        "LEVER_ENV": "production",
        "LEVER_CLIENT_ID": "",
        "LEVER_CLIENT_SECRET": "",
        "LEVER_AUTHORIZE_URL": None,
        "LEVER_TOKEN_URL": None,
        "LEVER_API_BASE_URL": None,
        "LEVER_AUDIENCE": None,
        "LEVER_APP_URL": None,
        "LEVER_SANDBOX_URL": "http://127.0.0.1:5001",
        # docs/providers/lever.md#rest-api: 10 requests/s, bursts to 20.
        "LEVER_RATE_LIMIT": 10.0,
        "LEVER_RATE_BURST": 20,
        # The share of that rate the hub plans with (room for work that runs a little late).
        "LEVER_RATE_HEADROOM": 0.9,
        # The share of Lever's burst it plans with (room for calls that run late together).
        "LEVER_BURST_HEADROOM": 0.5,
        "LEVER_TIMEOUT": 20,
        "LEVER_MAX_RETRIES": 3,
        # Deliveries whose triggeredAt is older than this are refused as replays.
        "LEVER_WEBHOOK_MAX_AGE_SECONDS": 600,
    }
    connected_hints = (
        "In Lever's webhook settings (Settings › Integrations and API › Webhooks), switch "
        "“Candidate Stage Change” on, or Lever sends no stage changes to WeCP.",
        "Switch “Candidate Archive Change” on there too, so that a candidate archived before "
        "starting their test has the invitation withdrawn.",
    )
    #: Creates the candidateStageChange and candidateArchiveChange webhooks and stores their
    #: signature tokens.
    on_connect_job = jobs.register_webhook
    activity_kinds = {"webhook": "Stage change"}
    activity_job_label = "Posting"
    #: The Lever writes, each exactly once (durable work), and the webhook's set-up.
    jobs = (jobs.register_webhook, flow.post_note, flow.tag_opportunity, flow.advance_candidate)
    periodic_jobs = (
        # Webhooks get lost (the hub down longer than Lever retries): read back what moved.
        PeriodicJob(flow.reconcile_postings, flow.RECONCILE_EVERY, queue="sync", per_connection=True),
        PeriodicJob(flow.remind_candidates, flow.REMIND_EVERY, queue="sync", per_connection=True),
    )
    blueprint = "plugins.wecp_lever.views:bp"
    api_blueprint = "plugins.wecp_lever.api:bp"
    #: Members link postings and follow up on candidates; admins change the settings.
    access = {
        "wecp_lever.static": "public",
        "wecp_lever.index": "member", "wecp_lever.link": "member", "wecp_lever.unlink": "member",
        "wecp_lever.confirm_unlink": "member",
        "wecp_lever.resend": "member", "wecp_lever.retry_email": "member",
        "wecp_lever.retry_note": "member", "wecp_lever.retry_tag": "member",
        "wecp_lever.save_settings": "admin",
        "wecp_lever_api.list_links": "member", "wecp_lever_api.create_link": "member",
        "wecp_lever_api.delete_link": "member", "wecp_lever_api.postings": "member",
        "wecp_lever_api.stages": "member",
    }
    test_page_panels = ("wecp_lever/_test_panel.html",)

    def activity_context(self, organization_id: int, subject_refs: set) -> dict:
        return activity.context(organization_id, subject_refs)

    def activity_jobs(self, organization_id: int) -> list[tuple[str, str]]:
        return activity.postings(organization_id)

    def activity_job_subjects(self, organization_id: int, job_ref: str):
        return activity.moved_from(organization_id, job_ref)

    def hints(self, connection) -> list[str]:
        """Each switch's reminder until an event of that kind has arrived from Lever."""
        from hub.extensions import db
        from hub.inbox import WebhookDelivery, last_ping

        arrived = set(db.session.scalars(db.select(WebhookDelivery.event).filter_by(
            connection_id=connection.id).distinct()))
        stage_change, archive_change = self.connected_hints
        hints = []
        if "candidateStageChange" not in arrived and last_ping(connection.id) is None:
            hints.append(stage_change)
        if "candidateArchiveChange" not in arrived:
            hints.append(archive_change)
        return hints

    def alerts(self, connection) -> list[CardAlert]:
        """Lever is not sending stage changes: reconciliation found moves no webhook announced.
        Cleared by the next delivery Lever sends."""
        count, last = flow.missed_stage_changes(connection)
        if not count:
            return []
        moves = "a move" if count == 1 else f"{count} moves"
        return [CardAlert(
            f"Lever is not sending stage changes: WeCP found {moves} into linked stages only by its "
            f"periodic check, so those tests went out late (the last on {last:%d %b %H:%M} UTC; "
            f"see the activity log).",
            flow.SWITCH_STAGE_CHANGE_ON + " This warning clears when Lever's next stage change arrives.")]

    def setup_steps(self, connection) -> list[SetupStep]:
        """Webhook receiving → a test linked → the first invitation sent, each seen in the data."""
        from hub.assessments import services as assessments
        from hub.extensions import db
        from hub.inbox import WebhookDelivery, last_ping

        from .models import PostingLink

        org_id = connection.organization_id
        delivered = db.session.scalar(db.select(WebhookDelivery.id).filter_by(connection_id=connection.id)
                                      .limit(1)) is not None
        pinged = last_ping(connection.id) is not None
        linked = db.session.scalar(db.select(PostingLink.id).filter_by(organization_id=org_id).limit(1))
        sent = assessments.invitation_email_sent(org_id, self.key)
        # Moves found with no webhook since (``alerts``) undo the tick until Lever sends again.
        missed = flow.missed_stage_changes(connection)[0] if delivered or pinged else 0
        return [
            SetupStep("Lever sends stage changes", (delivered or pinged) and not missed,
                      flow.SWITCH_STAGE_CHANGE_ON if missed else
                      ("Stage changes arrive." if delivered else "Lever's Verify Connection reached WeCP.")
                      if delivered or pinged else
                      "In Lever's webhook settings, switch “Candidate Stage Change” on (Lever's "
                      "Verify Connection button, where it has one, checks the link at once)."),
            SetupStep("A test linked to a posting", linked is not None,
                      "" if linked else "Open a test and click “Link job posting from Lever”."),
            SetupStep("First invitation sent", sent,
                      "" if sent else "Move a candidate who applied after the link into its stage in Lever."),
        ]

    def check_connection(self, connection) -> None:
        """Prove the tokens work by listing Lever's users, and learn who to write as.

        The users list is the cheapest call that also tells us what the connection needs:
        ``data["fallback_user_id"]``, the Lever user notes are written as when a posting has no
        usable owner (the active user with the connecting admin's email, else the first active
        Super Admin, else admin), and a name a person recognises for the account.
        """
        from .lever import LeverClient

        users = LeverClient(connection.id).list_users()
        active = [u for u in users if not u.get("deactivatedAt")]
        email = (connection.connected_by.email if connection.connected_by else "").lower()
        fallback = next((u for u in active if (u.get("email") or "").lower() == email), None)
        # docs/providers/lever.md#users: accessRole is "super admin", "admin",
        # "team member", "limited team member" or "interviewer".
        for role in ("super admin", "admin"):
            fallback = fallback or next((u for u in active if u.get("accessRole") == role), None)
        connection.data = {**(connection.data or {}),
                           "fallback_user_id": fallback["id"] if fallback else None}
        # Lever has no "account" endpoint (no name or id of the Lever account): the email domain
        # most of its users share (e.g. "acme.example") is what an admin recognises.
        domains = Counter((u.get("email") or "").rpartition("@")[2].lower() for u in active)
        domains.pop("", None)
        connection.external_account_name = domains.most_common(1)[0][0] if domains else "Lever"

    def on_disconnect(self, connection) -> str | None:
        """Delete our webhooks in Lever; returns what went wrong, if anything."""
        from hub.extensions import db

        from .lever import LeverClient, LeverError, NotFound
        from .models import Webhook

        extra = list(db.session.scalars(db.select(Webhook).filter_by(connection_id=connection.id)))
        problems = []
        for webhook_id in [connection.webhook_id] + [row.webhook_id for row in extra]:
            if not webhook_id:
                continue
            try:
                LeverClient(connection.id).delete_webhook(webhook_id)
            except NotFound:
                pass  # already gone: what we wanted
            except LeverError as exc:
                problems.append(exc.for_admin())
        if problems:
            return f"the webhooks could not be deleted in Lever ({'; '.join(problems)}); delete them in " \
                   f"Lever (Settings › Integrations and API › Webhooks)"
        return None

    def init_app(self, app) -> None:
        from hub.assessments.signals import (
            invitation_cancelled,
            invitation_completed,
            invitation_expired,
            invitation_started,
            result_regraded,
        )
        from hub.signals import connection_disconnected

        app.jinja_env.globals["wecp_lever_links"] = _links_of_test
        app.jinja_env.globals["wecp_lever_connection"] = _connection_of_test
        app.extensions["hub.nav"].append(("wecp_lever.index", "Lever activity"))
        invitation_completed.connect(flow.on_invitation_completed)
        invitation_expired.connect(flow.on_invitation_expired)
        invitation_cancelled.connect(flow.on_invitation_cancelled)
        invitation_started.connect(flow.on_invitation_started)
        result_regraded.connect(flow.on_result_regraded)
        connection_disconnected.connect(forget_webhook_secrets)

    def production_problems(self, config) -> list[str]:
        problems = []
        if config.get("LEVER_ENV") == "local":
            problems.append("LEVER_ENV must be production or sandbox (local is the development stand-in)")
        for key in ("LEVER_CLIENT_ID", "LEVER_CLIENT_SECRET"):
            if not (config.get(key) or "").strip():
                problems.append(f"{key} must be set (the OAuth app registered with Lever)")
        if config.get("LEVER_ENV") != "local":
            # Tokens and candidates' data travel to these: never in clear, never to this machine.
            for key in LEVER_ENVIRONMENTS["production"]:
                problem = endpoint_problem(key, config.get(key) or "")
                if problem:
                    problems.append(problem)
        return problems

    def configure(self, config) -> None:
        env = config["LEVER_ENV"]
        if env == "local":
            # A local stand-in for Lever (development and tests) serves every endpoint on one host.
            base = config["LEVER_SANDBOX_URL"].rstrip("/")
            preset = {"LEVER_AUTHORIZE_URL": base + "/authorize",
                      "LEVER_TOKEN_URL": base + "/oauth/token",
                      "LEVER_API_BASE_URL": base + "/v1",
                      "LEVER_AUDIENCE": base + "/v1/",
                      "LEVER_APP_URL": base}
        elif env in LEVER_ENVIRONMENTS:
            preset = LEVER_ENVIRONMENTS[env]
        else:
            raise ValueError(f"LEVER_ENV must be production, sandbox or local, not {env!r}")
        for key, value in preset.items():
            if not config.get(key):
                config[key] = value


def _connection_of_test(test):
    """The organization's Lever connection (or None), for the test page's panel."""
    from hub.extensions import db
    from hub.models import Connection

    return db.session.scalar(db.select(Connection).filter_by(
        organization_id=test.organization_id, plugin_key=WecpLeverPlugin.key))


def _links_of_test(test):
    from .links import links_of_test

    return links_of_test(test.organization_id, test.id)


def forget_webhook_secrets(sender, connection, **kwargs) -> None:
    """A disconnected connection's webhook signature tokens are of no use: forget them, whether
    its webhooks were deleted in Lever (``on_disconnect``) or access was revoked there first."""
    from hub.extensions import db

    from .models import Webhook

    if connection.plugin_key != WecpLeverPlugin.key:
        return
    db.session.execute(db.delete(Webhook).where(Webhook.connection_id == connection.id))
    db.session.commit()
