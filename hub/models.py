"""The hub's tables: organizations, users, API tokens, connections, settings, audit log.

The webhook inbox is ``hub.inbox``; outgoing email ``hub.mail``; both are durable work.
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .crypto import EncryptedField
from .extensions import db

ROLES = ("member", "admin", "super_admin")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_uuid() -> str:
    return str(uuid.uuid4())


class Organization(db.Model):
    __tablename__ = "organization"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The name candidates' emails come from ("<name> via WeCP"); the organization's name if unset.
    email_sender_name: Mapped[str | None] = mapped_column(sa.String(200))
    #: Where candidates' replies go (a recruiter's address); None: the emails say not to reply.
    email_reply_to: Mapped[str | None] = mapped_column(sa.String(320))

    @property
    def sender_name(self) -> str:
        return (self.email_sender_name or "").strip() or self.name


class User(db.Model):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    password_hash: Mapped[str] = mapped_column(sa.String(300))
    role: Mapped[str] = mapped_column(sa.String(20), default="member")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    organization: Mapped[Organization] = relationship()

    __table_args__ = (sa.CheckConstraint(f"role IN {ROLES!r}", name="role"),)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_admin(self) -> bool:
        return self.role in ("admin", "super_admin")


class Operator(db.Model):
    """A person who runs the hub itself (the job dashboard), bound to no organization's data.

    Operators are made, listed and removed only from the CLI (``hub operators …``) and sign in
    through the same page as users; they are never a ``User``, so no page, API or query of an
    organization ever sees one as a member.
    """

    __tablename__ = "operator"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class _IssuedSecret:
    """A secret the hub issued and shows once: only its SHA-256 is kept (it is random and long,
    so a fast hash is enough), and it ends when revoked or past its expiry."""

    @staticmethod
    def hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"


class ApiToken(_IssuedSecret, db.Model):
    """A personal token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    #: After this the token gets 401 (``None``: tokens made before expiries existed).
    expires_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()

    PREFIX = "hub_"
    #: The lifetimes a token may be given, in days.
    LIFETIMES = (30, 90, 365)

    @classmethod
    def issue(cls, user: User, name: str = "", days: int = 90) -> tuple[ApiToken, str]:
        token = cls.PREFIX + secrets.token_urlsafe(32)
        return cls(user=user, name=name[:100], token_hash=cls.hash(token),
                   expires_at=utcnow() + timedelta(days=days)), token


class _PresetId:
    """Gives the row its uuid at construction, so encrypted fields can bind to it at once."""

    def __init__(self, **kwargs):
        kwargs.setdefault("id", new_uuid())
        super().__init__(**kwargs)


class Connection(_PresetId, db.Model):
    """One organization's authorised account at one provider of one plugin.

    Status is derived from these fields (see ``status``), never stored.
    """

    __tablename__ = "connection"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    plugin_key: Mapped[str] = mapped_column(sa.String(64))
    provider: Mapped[str] = mapped_column(sa.String(64))
    #: Unguessable id in the webhook URL; the only way a delivery finds its connection.
    endpoint_id: Mapped[str] = mapped_column(sa.String(64), unique=True,
                                             default=lambda: secrets.token_urlsafe(24))
    external_account_id: Mapped[str | None] = mapped_column(sa.String(200))
    external_account_name: Mapped[str | None] = mapped_column(sa.String(200))
    scopes: Mapped[str] = mapped_column(sa.Text, default="")
    credentials_ciphertext: Mapped[str | None] = mapped_column(sa.Text)
    token_expires_at: Mapped[datetime | None]
    connected_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    connected_at: Mapped[datetime | None]
    setup_completed_at: Mapped[datetime | None]
    setup_error: Mapped[str | None] = mapped_column(sa.Text)
    last_refresh_at: Mapped[datetime | None]
    last_refresh_error: Mapped[str | None] = mapped_column(sa.Text)
    refresh_failures: Mapped[int] = mapped_column(default=0)
    last_used_at: Mapped[datetime | None]
    #: The provider refused our credentials for good (revoked in the provider, or expired).
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(sa.Text)
    #: An admin disconnected it in the hub.
    disconnected_at: Mapped[datetime | None]
    webhook_id: Mapped[str | None] = mapped_column(sa.String(200))
    webhook_secret_ciphertext: Mapped[str | None] = mapped_column(sa.Text)
    #: Plugin-specific, non-secret facts (e.g. the provider user to write as when no other fits).
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    connected_by: Mapped[User | None] = relationship()

    credentials = EncryptedField("credentials_ciphertext")
    webhook_secret = EncryptedField("webhook_secret_ciphertext")

    __table_args__ = (sa.UniqueConstraint("organization_id", "plugin_key", "provider"),)

    NOT_CONNECTED = "Not connected"
    SETTING_UP = "Setting up…"
    ACTIVE = "Active"
    NEEDS_ATTENTION = "Needs attention"
    REVOKED = "Revoked"

    @property
    def status(self) -> str:
        if self.disconnected_at is not None or self.credentials_ciphertext is None and self.revoked_at is None:
            return self.NOT_CONNECTED
        if self.revoked_at is not None:
            return self.REVOKED
        if self.setup_error or self.refresh_failures:
            return self.NEEDS_ATTENTION
        if self.setup_completed_at is None:
            return self.SETTING_UP
        return self.ACTIVE

    @property
    def unusable_reason(self) -> str:
        """Why work for this connection cannot run now, in words (outbox and connections)."""
        if self.disconnected_at is not None:
            return "disconnected in the hub"
        if self.revoked_at is not None:
            return self.revoked_reason or "revoked"
        return "no credentials"

    @hybrid_property
    def usable(self) -> bool:
        """True when work for this connection may run now (not revoked, not disconnected); in a
        query, the same condition in SQL (``select(Connection.id).where(Connection.usable)``)."""
        return self.disconnected_at is None and self.revoked_at is None and self.credentials_ciphertext is not None

    @usable.inplace.expression
    @classmethod
    def _usable_expression(cls):
        return sa.and_(cls.disconnected_at.is_(None), cls.revoked_at.is_(None),
                       cls.credentials_ciphertext.is_not(None))


class PartnerKey(_IssuedSecret, db.Model):
    """A key WeCP issued for one connection, which the provider presents when it calls WeCP's
    partner endpoints (``PartnerKeyProvider``). Only its SHA-256 is stored: it is shown once."""

    __tablename__ = "partner_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"), index=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: The key's last four characters, so the admin can tell keys apart ("…x9Qa").
    hint: Mapped[str] = mapped_column(sa.String(8))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Set when a newer key replaces this one: it keeps working until then (the overlap).
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    #: The last call refused because this key was revoked or had expired, and how many were:
    #: the provider still uses a key the admin replaced, which the card says.
    refused_at: Mapped[datetime | None]
    refused_count: Mapped[int] = mapped_column(default=0, server_default="0")

    created_by: Mapped[User | None] = relationship()

    PREFIX = "wcp_pk_"

    @property
    def ended_at(self) -> datetime | None:
        """When the key stopped working (revoked, or the end of its overlap), or None."""
        ends = [t for t in (self.revoked_at, self.expires_at) if t is not None and t <= utcnow()]
        return min(ends) if ends else None


class IntegrationSetting(_PresetId, db.Model):
    """One organization's value of one plugin setting (secret ones encrypted)."""

    __tablename__ = "integration_setting"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    plugin_key: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[dict | list | str | int | bool | None] = mapped_column(sa.JSON)
    secret_ciphertext: Mapped[str | None] = mapped_column(sa.Text)

    secret_value = EncryptedField("secret_ciphertext")

    __table_args__ = (sa.UniqueConstraint("organization_id", "plugin_key", "key"),)


class AuditEvent(db.Model):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    action: Mapped[str] = mapped_column(sa.String(100))
    target: Mapped[str | None] = mapped_column(sa.String(200))
    details: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    user: Mapped[User | None] = relationship()


def audit(action: str, *, organization_id=None, user_id=None, target=None, **details) -> AuditEvent:
    """Add an audit entry to the session (committed with the caller's transaction)."""
    event = AuditEvent(action=action, organization_id=organization_id, user_id=user_id,
                       target=target, details=details)
    db.session.add(event)
    return event
