"""Fixtures for the whole suite: the app on SQLite and PostgreSQL, real Redis, signed-in clients."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from hub import create_app, schema
from hub.extensions import db, get_redis
from tests.services import PostgresDatabase, RedisServer

#: Two keys as ``hub keys generate`` makes them (production's randomness checks accept them).
TEST_KEYS = ["ipDF_WVYPhsdYIS79lUifxq3NmPu4WX_kKMJBYCx8Kk=",
             "eKhT6d49If5SaICcczXx0_vzDSf9WmCY02wAiM92UBQ="]


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_db():
    database = PostgresDatabase()
    yield database
    database.drop()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "hub.sqlite3")


def base_config(database_url: str, redis_url: str, **extra) -> dict:
    config = {
        "TESTING": True,
        "SECRET_KEY": "6Ud4M981COiz_fBAFwSFXhPrzEUI3nxiEkdtbuq_V4Ii_xdCRCI0PCpKGdjlRn1h",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HUB_ENCRYPTION_KEYS": [TEST_KEYS[0]],
        "HUB_BASE_URL": "http://hub.test",
        "SERVER_NAME": None,
        "HUB_STRICT_PLUGINS": True,
        "LEVER_ENV": "local",
        "LEVER_CLIENT_ID": "wecp-hub-test",
        "LEVER_CLIENT_SECRET": "test-client-secret",
    }
    config.update(extra)
    return config


#: Per database: which plugin histories were upgraded, and the tables that exist.
_migrated: dict[str, tuple[set[str], set[str]]] = {}


def _reset(app) -> None:
    """Empty every table; the schema is built from the migrations, once per database and plugin.

    A database is dropped once per run; each new set of plugins then upgrades it (the hub's
    history is already at its head, the new plugins' histories are applied).
    """
    with app.app_context():
        get_redis().flushdb()
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        histories = {h.key for h in schema.histories(app)}
        if url not in _migrated and url.startswith("postgresql"):
            db.session.execute(db.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        done, existing = _migrated.get(url, (set(), set()))
        if not histories <= done:
            schema.upgrade(app)
            done = done | histories
            existing = set(sa.inspect(db.engine).get_table_names())
            _migrated[url] = (done, existing)
        tables = [t.name for t in db.metadata.sorted_tables if t.name in existing]
        if url.startswith("postgresql"):
            db.session.execute(db.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) +
                                       " RESTART IDENTITY CASCADE"))
        else:
            for t in reversed(tables):
                db.session.execute(db.text(f'DELETE FROM "{t}"'))
        db.session.commit()


@pytest.fixture(scope="session")
def sandbox():
    """The Lever sandbox: one process for the whole run. Tests reset it to the seed they need
    (``sandbox.admin.reset()``), which also restores its settings."""
    from sandboxes.lever.testing import start_sandbox

    server = start_sandbox()
    yield server
    server.stop()


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_db").url
    return request.getfixturevalue("sqlite_url")


@pytest.fixture
def postgres_url(postgres_db):
    return postgres_db.url


class FreshContextClient(FlaskClient):
    """Each request gets its own app context (own ``g`` and database session), as in production.

    Without this, the app context the fixture keeps pushed would be shared by every request.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


def _make_app(database_url, redis_server, extra):
    app = create_app(base_config(database_url, redis_server.url, **extra))
    app.test_client_class = FreshContextClient
    _reset(app)
    return app


@pytest.fixture
def app_config():
    """Override in a module to change the app's config."""
    return {}


@pytest.fixture
def app(database_url, redis_server, app_config):
    """The hub on each database (tests using it run twice: PostgreSQL and SQLite)."""
    app = _make_app(database_url, redis_server, app_config)
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def pg_app(postgres_url, redis_server, app_config):
    """The hub on PostgreSQL only, for tests with workers, servers or concurrency."""
    app = _make_app(postgres_url, redis_server, app_config)
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    from hub.auth import create_user

    def make(org="Acme", email=None, role="admin", password="correct horse battery"):
        email = email or f"{role}-{org.lower().replace(' ', '-')}@example.com"
        user = create_user(org, email, password, role)
        db.session.commit()
        return user
    return make


def csrf_token(client, path="/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client, email, password="correct horse battery"):
    token = csrf_token(client)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


OPERATOR_PASSWORD = "operator horse battery staple"


@pytest.fixture
def make_operator(app):
    """Make an operator of the hub (as ``hub operators add`` does)."""
    from hub.auth import create_operator

    def make(email="ops@wecp.example", password=OPERATOR_PASSWORD):
        operator = create_operator(email, password)
        db.session.commit()
        return operator
    return make


@pytest.fixture
def operator_client(app, make_operator):
    """A browser signed in as an operator."""
    operator = make_operator()
    client = app.test_client()
    sign_in(client, operator.email, OPERATOR_PASSWORD)
    return client


@pytest.fixture
def admin(make_user):
    return make_user(role="admin")


@pytest.fixture
def admin_client(client, admin):
    sign_in(client, admin.email)
    return client
