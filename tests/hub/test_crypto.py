import pytest

from hub.crypto import DecryptionError, decrypt, encrypt
from hub.extensions import db
from hub.models import Connection
from tests.conftest import TEST_KEYS


def _connection(org_id):
    conn = Connection(organization_id=org_id, plugin_key="tiny_example", provider="tiny")
    conn.credentials = '{"access_token": "at-secret", "refresh_token": "rt-secret"}'
    db.session.add(conn)
    db.session.commit()
    return conn


def test_secrets_are_stored_encrypted_and_read_back(app, admin):
    conn = _connection(admin.organization_id)
    raw = db.session.execute(db.text("SELECT credentials_ciphertext FROM connection")).scalar()
    assert "at-secret" not in raw and "rt-secret" not in raw
    db.session.expire_all()
    assert "at-secret" in db.session.get(Connection, conn.id).credentials


def test_ciphertext_copied_to_another_row_does_not_open(app, admin):
    one = _connection(admin.organization_id)
    two = Connection(organization_id=admin.organization_id, plugin_key="other", provider="x")
    two.credentials_ciphertext = one.credentials_ciphertext
    with pytest.raises(DecryptionError):
        _ = two.credentials


def test_tampered_ciphertext_fails(app):
    token = encrypt("secret", "ctx")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        decrypt(tampered, "ctx")


def test_rotation_reencrypts_under_the_first_key(app, admin, runner):
    conn = _connection(admin.organization_id)
    old = conn.credentials_ciphertext
    app.config["HUB_ENCRYPTION_KEYS"] = [TEST_KEYS[1], TEST_KEYS[0]]
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1" in result.output
    db.session.expire_all()
    conn = db.session.get(Connection, conn.id)
    assert conn.credentials_ciphertext != old
    app.config["HUB_ENCRYPTION_KEYS"] = [TEST_KEYS[1]]  # the old key can now be dropped
    assert "rt-secret" in conn.credentials
