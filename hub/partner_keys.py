"""Keys WeCP issues to a provider that calls it (the partner-key connection kind): issue one,
rotate with an overlap, revoke one, find the connection a presented key belongs to, and note a
call made with a key that no longer works (the admin is told on the card).

A key is shown once, when issued; only its SHA-256 is kept (``PartnerKey``).
"""
from __future__ import annotations

import secrets

import sqlalchemy as sa

from .extensions import db
from .models import Connection, PartnerKey, audit, utcnow

#: Longest key accepted from a caller (ours are 50 characters; providers cap theirs well under this).
MAX_PRESENTED = 200


def issue_key(conn: Connection, user_id: int | None) -> tuple[PartnerKey, str]:
    """A new key for ``conn`` (added to the session, not committed): the row and the key itself,
    which is shown to the admin once and never stored."""
    key = PartnerKey.PREFIX + secrets.token_urlsafe(32)
    row = PartnerKey(connection_id=conn.id, organization_id=conn.organization_id,
                     key_hash=PartnerKey.hash(key), hint=key[-4:], created_by_id=user_id)
    db.session.add(row)
    db.session.flush()
    audit("partner_key.issued", organization_id=conn.organization_id, user_id=user_id,
          target=conn.id, key_id=row.id, hint=row.hint)
    return row, key


def rotate_key(conn: Connection, user_id: int | None, overlap) -> tuple[PartnerKey, str, list[PartnerKey]]:
    """Issue a new key; the keys working now keep working for ``overlap`` (time to give the new
    one to the provider), then stop. Returns the new row, the key, and the keys now ending."""
    ends = utcnow() + overlap
    ending = [row for row in working_keys(conn.id) if row.expires_at is None or row.expires_at > ends]
    for row in ending:
        row.expires_at = ends
    row, key = issue_key(conn, user_id)
    audit("partner_key.rotated", organization_id=conn.organization_id, user_id=user_id,
          target=conn.id, key_id=row.id, ending=[r.id for r in ending], ends=ends.isoformat())
    return row, key, ending


def revoke_key(row: PartnerKey, user_id: int | None) -> None:
    """Refuse one key from now on (the connection and its other keys are untouched)."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit("partner_key.revoked", organization_id=row.organization_id, user_id=user_id,
              target=row.connection_id, key_id=row.id, hint=row.hint)


def _working():
    return sa.and_(PartnerKey.revoked_at.is_(None),
                   sa.or_(PartnerKey.expires_at.is_(None), PartnerKey.expires_at > utcnow()))


def working_keys(connection_id: str) -> list[PartnerKey]:
    """The keys of a connection that work now, newest first."""
    return list(db.session.scalars(db.select(PartnerKey).where(
        PartnerKey.connection_id == connection_id, _working()).order_by(PartnerKey.id.desc())))


def find_key(presented: str, plugin_key: str) -> PartnerKey | None:
    """The working key of a usable connection of ``plugin_key`` that ``presented`` is, or None."""
    if not presented or len(presented) > MAX_PRESENTED:
        return None
    return db.session.scalar(db.select(PartnerKey).join(
        Connection, Connection.id == PartnerKey.connection_id).where(
        PartnerKey.key_hash == PartnerKey.hash(presented), _working(),
        Connection.plugin_key == plugin_key, Connection.usable))


def note_refused(presented: str, plugin_key: str) -> PartnerKey | None:
    """Count a refused call on the key ``presented`` is when that key was revoked or has expired
    (its connection still usable): the provider was not given the new key. None for any other
    key (unknown ones are not ours to count)."""
    if not presented or len(presented) > MAX_PRESENTED:
        return None
    row = db.session.scalar(db.select(PartnerKey).join(
        Connection, Connection.id == PartnerKey.connection_id).where(
        PartnerKey.key_hash == PartnerKey.hash(presented), sa.not_(_working()),
        Connection.usable, Connection.plugin_key == plugin_key))
    if row is not None:
        # One statement, so calls refused side by side in several processes all count.
        db.session.execute(db.update(PartnerKey).where(PartnerKey.id == row.id).values(
            refused_at=utcnow(), refused_count=PartnerKey.refused_count + 1))
    return row


def refused_keys(connection_id: str, since) -> list[PartnerKey]:
    """The connection's keys that no longer work but were presented since ``since``, newest first."""
    return [row for row in db.session.scalars(db.select(PartnerKey).where(
        PartnerKey.connection_id == connection_id, PartnerKey.refused_at.is_not(None),
        PartnerKey.refused_at >= since).order_by(PartnerKey.refused_at.desc()))
        if row.ended_at is not None and row.refused_at >= row.ended_at]
