"""What the WeCP–Lever integration is, as the hub's plugin contract asks."""
from __future__ import annotations

from hub.plugin import OAuth2Provider, Plugin, Setting

from .webhooks import LeverWebhookSource

# Lever docs (/developer/oauth): hosts of production and of Lever's own sandbox.
LEVER_ENVIRONMENTS = {
    "production": {
        "LEVER_AUTHORIZE_URL": "https://auth.lever.co/authorize",
        "LEVER_TOKEN_URL": "https://auth.lever.co/oauth/token",
        "LEVER_API_BASE_URL": "https://api.lever.co/v1",
        # Lever docs: the audience carries a trailing slash; without it only offline_access is granted.
        "LEVER_AUDIENCE": "https://api.lever.co/v1/",
    },
    "sandbox": {
        "LEVER_AUTHORIZE_URL": "https://sandbox-lever.auth0.com/authorize",
        "LEVER_TOKEN_URL": "https://sandbox-lever.auth0.com/oauth/token",
        "LEVER_API_BASE_URL": "https://api.sandbox.lever.co/v1",
        "LEVER_AUDIENCE": "https://api.sandbox.lever.co/v1/",
    },
}

# Lever docs (/developer/usecases, assessment partners): the recommended scopes, plus postings and
# users, which WeCP needs to list postings and pick the note's author.
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
    description = ("Invite Lever candidates to a WeCP test when they reach a stage, and save "
                   "their score as a note on the Lever profile.")
    providers = (
        OAuth2Provider(
            name="lever",
            title="Lever",
            config_prefix="LEVER",
            scopes=LEVER_SCOPES,
            # Lever docs (/developer/oauth): prompt=consent shows the permissions every time.
            authorize_params={"prompt": "consent"},
            authorize_params_from_config={"audience": "LEVER_AUDIENCE"},
        ),
    )
    webhook_sources = (LeverWebhookSource(),)
    settings = (
        Setting("tag_invited", "Tag invited candidates “WeCP: invited”", True, bool),
        Setting("tag_results", "Tag results “WeCP: completed” and “WeCP: passed/failed”", True, bool),
        Setting("advance_on_pass_stage", "Move candidates who pass to this stage (empty: never)", "", str),
    )
    config = {
        "LEVER_ENV": "production",
        "LEVER_CLIENT_ID": "",
        "LEVER_CLIENT_SECRET": "",
        "LEVER_AUTHORIZE_URL": None,
        "LEVER_TOKEN_URL": None,
        "LEVER_API_BASE_URL": None,
        "LEVER_AUDIENCE": None,
        "LEVER_SANDBOX_URL": "http://127.0.0.1:5001",
        # Deliveries whose triggeredAt is older than this are refused as replays.
        "LEVER_WEBHOOK_MAX_AGE_SECONDS": 600,
    }
    connected_hints = (
        "In Lever, open Settings › Integrations and API › Webhooks and switch "
        "“Candidate Stage Change” on, or Lever sends no stage changes to WeCP.",
    )

    def configure(self, config) -> None:
        env = config["LEVER_ENV"]
        if env == "local":
            # The bundled sandbox (plugins/wecp_lever/sandbox) serves every endpoint on one host.
            base = config["LEVER_SANDBOX_URL"].rstrip("/")
            preset = {"LEVER_AUTHORIZE_URL": base + "/authorize",
                      "LEVER_TOKEN_URL": base + "/oauth/token",
                      "LEVER_API_BASE_URL": base + "/v1",
                      "LEVER_AUDIENCE": base + "/v1/"}
        elif env in LEVER_ENVIRONMENTS:
            preset = LEVER_ENVIRONMENTS[env]
        else:
            raise ValueError(f"LEVER_ENV must be production, sandbox or local, not {env!r}")
        for key, value in preset.items():
            if not config.get(key):
                config[key] = value
