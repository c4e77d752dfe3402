"""Secrets: encrypted at rest under rotatable keys, never in logs, pages or error pages."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa

from hub.assessments import services
from hub.assessments.models import Invitation, Result
from hub.connections import refresh_now
from hub.crypto import ENCRYPTED_FIELDS, PREFIX
from hub.extensions import db
from hub.inbox import WebhookDelivery
from hub.mail import OutboundEmail
from hub.models import Connection
from hub.security import install_log_redaction, redact
from tests.conftest import TEST_KEYS
from tests.security.conftest import (
    CALLBACK_PATH,
    CLIENT_ID,
    CLIENT_SECRET,
    SAMPLE,
    api_token,
    consent,
    needs_plugin,
)
from tests.services import free_port
from tests.workers import ROOT, live_server, wait_for, worker_env, workers  # noqa: F401 (fixtures)

#: Loggers that may not propagate to the root logger, captured on their own too.
OTHER_LOGGERS = ("werkzeug", "gunicorn", "gunicorn.error", "gunicorn.access", "rq", "rq.worker")


@pytest.fixture
def app_config(sandbox):
    return {"LEVER_SANDBOX_URL": sandbox.url, "LEVER_MAX_RETRIES": 0}


@pytest.fixture
def all_logs():
    """Everything logged in this process, at DEBUG, whichever logger: a StringIO."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in OTHER_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield buffer
    for lg, level in zip(loggers, levels):
        lg.removeHandler(handler)
        lg.setLevel(level)


def _csrf(session: requests.Session, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', session.get(url, timeout=10).text).group(1)


def _found(secret_values: dict, text: str) -> list[str]:
    return sorted(name for name, value in secret_values.items() if value and value in text)


@needs_plugin("wecp_lever")
def test_no_secret_reaches_any_log_during_a_full_journey(pg_app, sandbox, live_server, workers, all_logs):
    """Connect through the sandbox, refresh, API calls, a real webhook, an invitation email, the
    candidate's test and the report, over real HTTP with a real worker: every log line of this
    process (root at DEBUG, werkzeug, gunicorn, rq) and of the worker is free of secrets."""
    from hub.auth import create_user

    base = live_server.url
    pg_app.config["HUB_BASE_URL"] = base
    sandbox.admin.reset()
    sandbox.admin.add_client(CLIENT_ID, CLIENT_SECRET, [base + CALLBACK_PATH])
    admin = create_user("Acme", "admin@acme.example", "correct horse battery", "admin")
    db.session.commit()
    workers.start(1, HUB_WORKER_LOG_LEVEL="INFO")  # RQ's line per job too, as verbose as it gets
    secret_values = {"client secret": CLIENT_SECRET}

    # An admin signs in and connects Lever over real HTTP.
    browser = requests.Session()
    browser.post(base + "/login", timeout=10, data={
        "email": admin.email, "password": "correct horse battery", "csrf_token": _csrf(browser, base + "/login")})
    page = base + "/settings/integrations"
    started = browser.post(base + "/integrations/wecp_lever/connect", data={"csrf_token": _csrf(browser, page)},
                           allow_redirects=False, timeout=10)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.headers["Location"]).query).items()}
    answer = consent(sandbox, query)
    secret_values["authorization code"] = answer["code"]
    browser.get(base + CALLBACK_PATH, params=answer, timeout=10)
    conn = wait_for(lambda: db.session.scalar(db.select(Connection).where(
        Connection.webhook_secret_ciphertext.is_not(None))), message="the webhook registration")
    first = json.loads(conn.credentials)
    secret_values.update({"first access token": first["access_token"],
                          "first refresh token": first["refresh_token"],
                          "webhook signature token": conn.webhook_secret})
    refresh_now(conn.id)  # a rotation, so both token pairs are in play
    db.session.expire_all()
    second = json.loads(db.session.get(Connection, conn.id).credentials)
    secret_values.update({"access token": second["access_token"], "refresh token": second["refresh_token"]})

    # API calls with a personal token.
    token = api_token(admin)
    secret_values["API token"] = token
    bearer = {"Authorization": f"Bearer {token}"}
    created = requests.post(base + "/api/v1/tests", json={**SAMPLE, "title": "Journey"}, headers=bearer, timeout=10)
    assert created.status_code == 201, created.text
    test_id = created.json()["data"]["id"]
    assert requests.get(base + "/api/v1/tests", headers=bearer, timeout=10).status_code == 200

    # Lever sends a real, signed webhook when a candidate moves.
    state = sandbox.admin.state("acme")
    posting = next(iter(state["postings"]))
    [opportunity] = sandbox.admin.add_candidates("acme", posting, "applicant-new",
                                                 candidates=[{"name": "Jo Journey", "email": "jo@example.com"}])
    sandbox.admin.move("acme", [opportunity], "5d1a2b3c-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    wait_for(lambda: db.session.scalar(db.select(WebhookDelivery).where(
        WebhookDelivery.status.in_(("done", "skipped", "failed")))), message="the webhook delivery")

    # The invitation (as the Lever flow makes it), its email, the candidate's test, the report.
    invitation, _ = services.create_invitation(test_id, name="Jo Journey", email="jo@example.com",
                                               source="wecp_lever", source_ref=opportunity,
                                               idempotency_key=f"journey:{opportunity}")
    db.session.commit()  # services work inside the caller's transaction
    candidate = requests.Session()
    link = services.invitation_url(invitation.id)
    browser.get(base + "/dev/outbox", timeout=10)
    candidate.post(link + "/start", data={"csrf_token": _csrf(candidate, link)}, timeout=10)
    candidate.post(link + "/submit", data={"csrf_token": _csrf(candidate, link)}, timeout=10)
    assert candidate.get(link + "/done", timeout=10).status_code == 200
    db.session.expire_all()
    result = db.session.scalar(db.select(Result).filter_by(invitation_id=invitation.id))
    assert requests.get(services.report_url(result.id), timeout=10).status_code == 200
    browser.get(f"{base}/results/{result.id}", timeout=10)
    wait_for(lambda: db.session.scalar(db.select(OutboundEmail).filter_by(status="done")),
             message="the invitation email")

    # Every link token of every invitation and report (the flow may have made more).
    db.session.expire_all()
    for i, inv in enumerate(db.session.scalars(db.select(Invitation))):
        secret_values[f"candidate link token {i}"] = inv.token
    for i, res in enumerate(db.session.scalars(db.select(Result))):
        secret_values[f"report link token {i}"] = res.report_token

    workers.stop_all()
    worker_logs = ""
    for name in os.listdir(workers.log_dir):
        if name.endswith(".log"):
            with open(os.path.join(workers.log_dir, name), errors="replace") as f:
                worker_logs += f.read()
    logs = all_logs.getvalue()
    # The capture saw the journey, including access logs of the link paths (redacted).
    assert "GET /t/[redacted]" in logs and "GET /r/[redacted]" in logs
    assert "/oauth/token" in logs and "process_delivery" in worker_logs and "hub.mail.sent" in worker_logs
    assert _found(secret_values, logs) == []
    assert _found(secret_values, worker_logs) == []


def test_log_redaction_reaches_handlers_added_after_start(app):
    """gunicorn, the RQ worker and others attach handlers (some on loggers that do not
    propagate) after the app started: their records are redacted all the same."""
    buffer = io.StringIO()
    late = logging.getLogger("gunicorn.access.late")
    late.propagate = False
    late.setLevel(logging.INFO)
    handler = logging.StreamHandler(buffer)
    late.addHandler(handler)
    link, report, api = (secrets.token_urlsafe(32) for _ in range(3))
    try:
        late.info('127.0.0.1 - - "GET /t/%s HTTP/1.1" 200', link)
        late.info('"GET /r/%(token)s HTTP/1.1" 200', {"token": report})
        late.info("Authorization: Bearer %s refresh_token=%s", api, "rt-" + api)
        try:
            raise RuntimeError(f"failed with access_token={api}")
        except RuntimeError:
            late.exception("job failed")
    finally:
        late.removeHandler(handler)
    text = buffer.getvalue()
    assert link not in text and report not in text and api not in text
    assert text.count("[redacted]") >= 5


def test_gunicorn_access_and_error_logs_hide_link_tokens(pg_app, tmp_path):
    """The production server, as deployed (`gunicorn wsgi:app`), with access logs on."""
    port = free_port()
    env = worker_env(pg_app)
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                                 "--workers", "1", "--access-logfile", "-", "--error-logfile", "-",
                                 "--log-level", "debug", "wsgi:app"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    link, report = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60, message="gunicorn")
        assert requests.get(f"http://127.0.0.1:{port}/t/{link}", timeout=10).status_code == 404
        assert requests.get(f"http://127.0.0.1:{port}/r/{report}?token={report}", timeout=10).status_code == 404
        # A provider's key is HTTP Basic's user name, which access logs print (%(u)s).
        requests.get(f"http://127.0.0.1:{port}/healthz", auth=(f"their-key-{link}", ""), timeout=10)
    finally:
        proc.terminate()
        proc.wait(30)
    text = log_path.read_text(errors="replace")
    assert "GET /t/[redacted]" in text and "GET /r/[redacted]" in text
    assert link not in text and report not in text
    assert "- [redacted] [" in text


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_redaction_patterns_cover_every_kind_of_secret():
    token = secrets.token_urlsafe(32)
    lines = [f"Authorization: Bearer {token}", f'{{"access_token": "{token}"}}',
             f"refresh_token={token}&x=1", f"client_secret={token}", f"signatureToken: {token}",
             f"GET /t/{token}/start", f"GET /r/{token}", f"hub_{token}", f"code={token}&state=x",
             f"key wcp_pk_{token} refused",
             f'127.0.0.1 - {token} [07/Dec/2026:19:58:59 +0000] "GET /partners/x/list_tests HTTP/1.1" 200 70']
    for line in lines:
        assert token not in redact(line), line


def test_no_secret_is_stored_in_clear(app, org_a):
    """Tokens, link tokens, signature tokens and email bodies (which carry links) are stored
    encrypted; API tokens only as hashes."""
    api = api_token(org_a.admin)
    conn = db.session.get(Connection, org_a.connection_id)
    creds = json.loads(conn.credentials)
    values = {"access token": creds["access_token"], "refresh token": creds["refresh_token"],
              "webhook signature token": conn.webhook_secret, "candidate link token": org_a.invitation_token,
              "report link token": org_a.report_token, "API token": api}
    found = []
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, (sa.String, sa.Text, sa.JSON)):
                for (value,) in db.session.execute(sa.select(sa.cast(column, sa.Text))):
                    found += [(table.name, column.name, n) for n, s in values.items() if value and s in value]
    assert found == []
    email = db.session.scalar(db.select(OutboundEmail))
    assert org_a.invitation_token in email.text and org_a.invitation_token not in email.text_ciphertext


def test_keys_rotate_without_losing_a_secret(app, org_a, runner):
    """Add a new key in front, run `hub keys rotate`, drop the old key: every secret still opens."""
    before = {(model.__name__, field.name, row.id): field.__get__(row)
              for model, field in ENCRYPTED_FIELDS
              for row in db.session.scalars(db.select(model).where(getattr(model, field.column).is_not(None)))}
    assert len(before) >= 6
    app.config["HUB_ENCRYPTION_KEYS"] = [TEST_KEYS[1], TEST_KEYS[0]]
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0 and f"re-encrypted {len(before)} secret(s)" in result.output
    app.config["HUB_ENCRYPTION_KEYS"] = [TEST_KEYS[1]]
    db.session.expire_all()
    after = {(model.__name__, field.name, row.id): field.__get__(row)
             for model, field in ENCRYPTED_FIELDS
             for row in db.session.scalars(db.select(model).where(getattr(model, field.column).is_not(None)))}
    assert after == before
    ciphertexts = [getattr(row, field.column) for model, field in ENCRYPTED_FIELDS
                   for row in db.session.scalars(db.select(model).where(getattr(model, field.column).is_not(None)))]
    assert all(c.startswith(PREFIX + ":") for c in ciphertexts)


def test_pages_and_api_never_show_tokens(app, org_a, browser):
    """The Integrations page and API, the outbox and the result pages: no token in any of them,
    except the candidate link an admin reads in the development outbox."""
    conn = db.session.get(Connection, org_a.connection_id)
    creds = json.loads(conn.credentials)
    hidden = {"access token": creds["access_token"], "refresh token": creds["refresh_token"],
              "signature token": conn.webhook_secret, "client secret": CLIENT_SECRET,
              "encrypted credentials": conn.credentials_ciphertext[10:40]}
    admin = browser(org_a.admin)
    for path in ("/settings/integrations", "/api/v1/integrations", "/api/v1/me", "/dev/outbox",
                 f"/results/{org_a.result_id}", f"/tests/{org_a.test_id}", f"/api/v1/tests/{org_a.test_id}"):
        assert _found(hidden, admin.get(path).get_data(as_text=True)) == [], path


@pytest.fixture
def failing_route(app):
    """A page that fails with a secret in its exception, as a bug might."""
    secret = "access_token=" + secrets.token_urlsafe(24)

    def explode():
        raise RuntimeError(f"Lever said no to {secret} for https://hub.test/t/{secrets.token_urlsafe(32)}")
    app.add_url_rule("/_explode", "explode", explode)
    app.add_url_rule("/api/v1/_explode", "api_explode", explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return secret


def test_error_pages_and_error_logs_show_no_secrets(app, client, failing_route, all_logs):
    for path in ("/_explode", "/api/v1/_explode"):
        response = client.get(path)
        body = response.get_data(as_text=True)
        assert response.status_code == 500
        assert failing_route.split("=")[1] not in body and "RuntimeError" not in body and "Traceback" not in body
    logs = all_logs.getvalue()
    assert "RuntimeError" in logs and "Traceback" in logs  # the traceback is logged, redacted
    assert failing_route.split("=")[1] not in logs and "/t/[redacted]" in logs


def test_installing_redaction_twice_redacts_once():
    install_log_redaction()
    install_log_redaction()
    assert logging.getLogRecordFactory().hub_redacting
