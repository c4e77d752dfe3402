"""The plugin contract: what an integration declares so the hub can run it without knowing it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

# Outcomes are part of the contract: handlers and jobs return them.
# Part of the contract plugins import from here: what a job raises when its connection is not
# usable (defined with the job machinery that handles it) and the outcomes jobs return.
from .jobs import ConnectionUnusable, spec_of  # noqa: F401
from .outcomes import Done, Failed, Outcome, Several, Skipped  # noqa: F401


class WebhookError(Exception):
    """Base of the errors a webhook source raises; each maps to one HTTP answer at intake."""

    status = 400


class BadSignature(WebhookError):
    """The delivery is not signed by the provider (401, nothing stored)."""

    status = 401


class MalformedPayload(WebhookError):
    """The body cannot be understood (400, nothing stored)."""

    status = 400


class Ping(WebhookError):
    """A connectivity check from the provider: answered 200, nothing stored."""

    status = 200


@dataclass(frozen=True)
class IncomingEvent:
    """One verified, parsed webhook event, ready to be stored in the inbox."""

    #: The provider's event name, e.g. ``candidateStageChange``.
    event: str
    #: Unique per real-world event; a second delivery with the same key is a duplicate.
    dedupe_key: str
    #: The JSON payload as received, stored verbatim.
    payload: dict


#: How a connection to a provider is made and authenticated (Nango's ``auth_mode``): OAuth 2.0
#: authorization code; a key the ATS issued that the customer's admin pastes into WeCP; a key WeCP
#: issues that the customer hands to the ATS, which presents it when it calls WeCP.
AUTH_MODES = ("oauth2", "pasted_key", "partner_key")


@dataclass(frozen=True, kw_only=True)
class Provider:
    """An external system and how one organization's account there is connected, as data.

    One subclass per connection kind (``auth_mode``); the hub's Connect, card, Revoke, renewal and
    ``hub doctor`` follow the kind and speak with the provider's own words given here.
    """

    #: The connection kind: one of ``AUTH_MODES`` (set by each subclass).
    auth_mode: ClassVar[str] = ""
    #: Short name, unique within the plugin (e.g. the provider's name).
    name: str
    #: Human name shown on pages.
    title: str
    #: Who at the provider must act to connect, shown before Connect ("a Super Admin of the ATS").
    consent_by: str = ""
    #: What the connection lets WeCP do, in the admin's words, shown before Connect.
    permissions: tuple[str, ...] = ()
    #: Where a customer's admin removes WeCP on the provider's side (shown before and after
    #: Revoke, when the hub cannot do it itself).
    authorized_apps: str = ""


@dataclass(frozen=True, kw_only=True)
class OAuth2Provider(Provider):
    """A provider reached over OAuth 2.0 (authorization code).

    Endpoints and client credentials come from the app config under ``config_prefix``:
    ``<PREFIX>_CLIENT_ID``, ``_CLIENT_SECRET``, ``_AUTHORIZE_URL``, ``_TOKEN_URL``, ``_API_BASE_URL``.
    """

    auth_mode: ClassVar[str] = "oauth2"
    #: Prefix of the config keys holding endpoints and client credentials.
    config_prefix: str
    #: Scopes requested at consent.
    scopes: tuple[str, ...] = ()
    #: Extra static query parameters of the authorize request (``prompt=consent``).
    authorize_params: dict[str, str] = field(default_factory=dict)
    #: Extra authorize parameters whose value is read from the config (``audience``).
    authorize_params_from_config: dict[str, str] = field(default_factory=dict)
    #: Send PKCE (S256) with the authorize request.
    pkce: bool = True
    #: How the client authenticates at the token endpoint.
    token_endpoint_auth_method: str = "client_secret_post"
    #: Refresh tokens unused for longer than this may lapse at the provider: connections whose
    #: tokens were not refreshed for this long are refreshed by the hourly idle check. Keep it
    #: well under the provider's idle limit (a refresh token that lapses after 24 hours unused
    #: wants a few hours here; ``None``: tokens never lapse unused).
    refresh_idle_after: timedelta | None = timedelta(days=30)
    #: How long a refresh token lives at most (``None``: unknown or unlimited); the card warns
    #: ahead of it.
    refresh_token_lifetime: timedelta | None = None

    def setting(self, config, name: str) -> Any:
        return config.get(f"{self.config_prefix}_{name}")

    def client_kwargs(self, config) -> dict:
        """Keyword arguments for an Authlib client talking to this provider."""
        params = dict(self.authorize_params)
        params.update({k: config.get(v) for k, v in self.authorize_params_from_config.items()})
        kwargs = {"scope": " ".join(self.scopes),
                  "token_endpoint_auth_method": self.token_endpoint_auth_method}
        if self.pkce:
            kwargs["code_challenge_method"] = "S256"
        return {
            "client_id": self.setting(config, "CLIENT_ID"),
            "client_secret": self.setting(config, "CLIENT_SECRET"),
            "authorize_url": self.setting(config, "AUTHORIZE_URL"),
            "access_token_url": self.setting(config, "TOKEN_URL"),
            "api_base_url": self.setting(config, "API_BASE_URL"),
            "authorize_params": params,
            "client_kwargs": kwargs,
        }


@dataclass(frozen=True, kw_only=True)
class PastedKeyProvider(Provider):
    """A provider reached with a key (or token) its admin creates there and pastes into WeCP.

    The hub checks the key with ``Plugin.check_connection`` before saving anything, stores it
    encrypted, and hands it to API clients through ``hub.connections.access_token``; a key the
    provider refuses marks the connection revoked (only a new key helps).
    """

    auth_mode: ClassVar[str] = "pasted_key"
    #: The field's label, in the provider's words ("API key", "Harvest API key").
    key_label: str = "API key"
    #: Where in the provider the admin creates the key, and which permissions it needs.
    where_to_find: str = ""
    #: Label of a subdomain (or account name) field asked for with the key; "" asks for none.
    #: It is kept in ``connection.data["subdomain"]`` (letters, digits and dashes only).
    subdomain_label: str = ""


@dataclass(frozen=True, kw_only=True)
class PartnerKeyProvider(Provider):
    """A provider that calls WeCP (``Plugin.partner_blueprint``) with a key WeCP issues.

    Connect issues a key, shown once and stored hashed; the customer's admin hands it to the
    provider. Rotating issues a new one while the previous key keeps working for
    ``rotation_overlap``; revoking a key refuses it at once.
    """

    auth_mode: ClassVar[str] = "partner_key"
    #: How the provider presents the key: ``basic`` (HTTP Basic, the key as user name and an
    #: empty password) or ``bearer`` (``Authorization: Bearer <key>``).
    scheme: str = "basic"
    #: How and where the admin hands the key to the provider (shown with the key, once).
    hand_over: str = ""
    #: After a rotation, how long the previous key still works (time to update the provider).
    rotation_overlap: timedelta = timedelta(days=7)
    #: Calls one key may make a minute (a burst of as many, then that rate), for a provider whose
    #: own bulk actions call in bursts; ``None``: the hub's ``HUB_PARTNER_CALLS_PER_MINUTE``.
    calls_per_minute: int | None = None


class WebhookSource:
    """Turns raw webhook deliveries of one provider into stored events, then handles them.

    ``receive`` runs in the web process and must be fast and free of I/O besides reading the
    connection it is given; ``handle`` runs later in a worker, once per stored delivery, inside
    the delivery's transaction (``hub.inbox``).
    """

    #: Name of the source within the plugin; part of nothing public, used in logs.
    name: str = "default"
    #: Largest body accepted, in bytes (``None``: the hub's ``HUB_WEBHOOK_MAX_BYTES``).
    max_bytes: int | None = None

    def receive(self, connection, body: bytes, headers) -> IncomingEvent:
        """Verify and parse one delivery; raise a :class:`WebhookError` to refuse it."""
        raise NotImplementedError

    def handle(self, delivery, connection) -> Outcome:
        """Act on one stored delivery (``delivery.event``, ``.payload``, ``.id``) of ``connection``.

        Return an outcome (:class:`Skipped` for an event nobody acts on); raise
        :class:`ConnectionUnusable` to pause it, ``hub.outbox.Refused`` to fail it for good, any
        other exception to retry it. Write only to the session: the hub commits the delivery's
        outcome with the handler's writes, once.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class PeriodicJob:
    """A job the hub's scheduler enqueues at a fixed interval, once across all workers."""

    #: The job function (decorated with ``hub.jobs.job``).
    func: Callable
    #: How often it runs.
    interval: timedelta
    #: Queue it goes to (``None``: the job's own).
    queue: str | None = None
    #: When true the job runs once per usable connection of the plugin, with its id.
    per_connection: bool = False

    @property
    def name(self) -> str:
        """The job's dotted path (``HUB_PERIODIC_INTERVALS`` overrides are keyed by it)."""
        return spec_of(self.func).name

    @property
    def queue_name(self) -> str:
        return self.queue or spec_of(self.func).queue


@dataclass(frozen=True)
class Setting:
    """One per-organization setting of a plugin, shown on its settings form."""

    #: Key, unique within the plugin.
    key: str
    #: Label on the form.
    label: str
    #: Value when the organization never set one.
    default: Any = None
    #: ``bool``, ``str`` or ``int``.
    type: type = str
    #: Secret settings are encrypted at rest and never rendered back.
    secret: bool = False
    #: One line under the field.
    help: str = ""


#: Who may call a route: anyone; whoever holds the key in its URL (an invitation, a report link,
#: a webhook endpoint); any signed-in user of the organization; its admins and super admins; the
#: provider, presenting a partner key WeCP issued (every route of ``Plugin.partner_blueprint``,
#: and only those).
ACCESS_LEVELS = ("public", "token", "member", "admin", "partner")


@dataclass(frozen=True)
class SetupStep:
    """One step of an integration's setup checklist, ticked on the card as it happens."""

    #: What is to happen, in a few words ("A test linked to a posting").
    label: str
    #: Whether it has happened.
    done: bool
    #: While not done: what to do next; once done, what was seen (one sentence, or "").
    hint: str = ""


@dataclass(frozen=True)
class CardAlert:
    """Something wrong that the admin must know of, shown on the integration's card until the
    plugin no longer reports it (it clears itself when the cause is gone)."""

    #: What is wrong and what it has cost, in the admin's words (one or two sentences).
    message: str
    #: What to do about it, where (one sentence).
    next_step: str = ""
    #: ``warning`` (work goes on, late or partly) or ``error`` (work has stopped).
    level: str = "warning"
    #: Where the next step is taken (a path in the hub), and the link's words; admins only.
    link: str | None = None
    link_label: str = ""


@dataclass(frozen=True)
class ActivityContext:
    """What only the plugin knows of a candidate on the activity log (``Plugin.activity_context``)."""

    #: The job they were invited from, in the ATS's words ("Backend Engineer").
    job: str = ""
    #: The stage that invited them.
    stage: str = ""
    #: Their profile in the ATS (opened from their name).
    profile_url: str | None = None


class Plugin:
    """Base class of every integration. One instance per integration, found through config.

    A plugin is stateless code: everything per organization lives in the database
    (connections, settings, the plugin's own prefixed tables).
    """

    #: Unique key: the plugin's folder, URL segment, template folder, table prefix, logger name.
    key: str = ""
    #: Name on the Integrations page.
    title: str = ""
    #: One sentence on the Integrations page.
    description: str = ""
    #: Path of the logo under the plugin blueprint's static folder (or ``None``).
    logo: str | None = None
    #: The providers this integration connects to (each of one connection kind); the card shows
    #: one connection per provider.
    providers: tuple[Provider, ...] = ()
    #: Webhook sources, keyed by nothing: deliveries are routed by connection endpoint id.
    webhook_sources: tuple[WebhookSource, ...] = ()
    #: Every job the plugin enqueues (functions decorated with ``hub.jobs.job`` or
    #: ``hub.outbox.durable``); its durable-work kinds are swept and resumed by the hub.
    jobs: tuple[Callable, ...] = ()
    #: Jobs the scheduler runs on an interval.
    periodic_jobs: tuple[PeriodicJob, ...] = ()
    #: Dotted path ``module:attribute`` of a blueprint mounted at ``/integrations/<key>``.
    blueprint: str | None = None
    #: Dotted path of a blueprint made with ``hub.api.api_blueprint`` (mounted under
    #: ``/api/v1``; its routes should start with the plugin's resources or key).
    api_blueprint: str | None = None
    #: Dotted path of a blueprint of endpoints the provider calls (``PartnerKeyProvider``),
    #: mounted at ``/partners/<key>``. The hub authenticates each call by its partner key (no
    #: session, no CSRF), sets ``hub.partners.caller()``, limits its rate and body size, audits
    #: its writes, and answers every error as JSON through ``partner_error``.
    partner_blueprint: str | None = None
    #: Who may call each endpoint of the plugin's blueprints, by endpoint name
    #: (``"<blueprint>.<view>"``): one of ``ACCESS_LEVELS``. The hub refuses to load a plugin
    #: with a route left out, and the security suite calls every route as every role against it.
    access: dict[str, str] = {}
    #: Templates included on each WeCP test page (rendered with ``test``), e.g. a link panel.
    test_page_panels: tuple[str, ...] = ()
    #: Per-organization settings with defaults.
    settings: tuple[Setting, ...] = ()
    #: Config keys the plugin reads, with defaults; filled from the environment at load.
    config: dict[str, Any] = {}
    #: Lines shown on the card once connected (reminders for the admin), until ``hints`` says
    #: they are no longer needed.
    connected_hints: tuple[str, ...] = ()
    #: Words for the plugin's kinds of activity line (``hub.activity.record``), beside or instead
    #: of the hub's (``{"webhook": "Stage change"}``).
    activity_kinds: dict[str, str] = {}
    #: What the ATS calls a job, for the activity log's filter and column ("Posting").
    activity_job_label: str = "Job"
    #: The job run after a connection is made (``f(connection_id)``), or ``None``.
    on_connect_job: Callable | None = None

    def init_app(self, app) -> None:
        """Connect signal receivers and read config. No I/O here."""

    def configure(self, config) -> None:
        """Derive config values from others (presets); called after ``config`` is loaded."""

    def setup_steps(self, connection) -> list[SetupStep]:
        """The steps after Connect that make the integration work for an organization (the card
        shows them as a checklist under its own "Connected" step). ``connection`` is usable."""
        return []

    def hints(self, connection) -> list[str]:
        """The reminders the card shows now (``connection`` is usable): by default every
        ``connected_hints``; a plugin drops those whose step it sees done (a reminder that stays
        after the thing is done reads as a problem)."""
        return list(self.connected_hints)

    def alerts(self, connection) -> list[CardAlert]:
        """What the card must warn of now (e.g. the provider stopped sending events); recomputed
        on each view, so an alert clears itself once its cause is gone. ``connection`` is usable."""
        return []

    def production_problems(self, config) -> list[str]:
        """What in ``config`` would make this plugin fail (or fail silently) in production, each
        naming the setting to fix. Any problem stops the hub from starting there."""
        return []

    def activity_context(self, organization_id: int, subject_refs: set) -> dict:
        """For the activity log: an :class:`ActivityContext` by candidate reference, for those the
        plugin knows (one query or two for all of them, no call to the ATS)."""
        return {}

    def activity_jobs(self, organization_id: int) -> list[tuple[str, str]]:
        """The activity log's job filter: (job reference, title) of the organization's jobs."""
        return []

    def activity_job_subjects(self, organization_id: int, job_ref: str):
        """The candidate references of one job of ``activity_jobs`` (a select of one column)."""
        raise NotImplementedError

    def partner_error(self, status: int, message: str) -> dict:
        """The JSON body of an error answered on a partner endpoint, in the provider's shape
        (by default ``{"error": message}``); ``status`` is the HTTP status sent with it."""
        return {"error": message}

    def on_disconnect(self, connection) -> str | None:
        """Undo on the provider what ``on_connect_job`` set up (best effort).

        Returns an error message to record, or ``None`` when it went well.
        """
        return None

    def check_connection(self, connection) -> None:
        """Make one cheap authenticated call; raise on failure. Used before calling it Active."""

    def connect_job(self) -> Callable | None:
        """``on_connect_job`` as the job function (a function stored on a class reads as a method)."""
        job = self.on_connect_job
        return getattr(job, "__func__", job)

    def setting_defaults(self) -> dict[str, Any]:
        return {s.key: s.default for s in self.settings}

    def provider(self, name: str | None = None) -> Provider:
        for p in self.providers:
            if name is None or p.name == name:
                return p
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"<Plugin {self.key}>"

