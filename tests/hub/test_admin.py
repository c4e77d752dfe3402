"""The job dashboard at /admin/rq: operators only (404 for everyone else, every URL and method),
CSRF on changes, works with rq 3; probes."""
from __future__ import annotations

import re

import pytest
from rq.job import Job

from hub.extensions import db, get_redis
from hub.jobs import get_queue
from hub.models import Operator
from tests.conftest import OPERATOR_PASSWORD, csrf_token, sign_in

PAGES = ["/admin/rq", "/admin/rq/", "/admin/rq/0/view/workers", "/admin/rq/0/data/queues.json",
         "/admin/rq/0/data/workers.json", "/admin/rq/0/data/jobs/webhooks/failed/10/asc/1.json",
         "/admin/rq/static/css/main.css", "/admin/rq/no-such-page"]
POSTS = ["/admin/rq/job/x/requeue", "/admin/rq/job/x/delete", "/admin/rq/requeue/webhooks",
         "/admin/rq/queue/webhooks/failed/empty", "/admin/rq/queue/webhooks/compact"]
METHODS = ["GET", "POST", "PUT", "DELETE"]


def assert_hidden(client, token=None):
    """Every dashboard URL, by every method, with and without a CSRF token: 404, nothing else."""
    for path in PAGES + POSTS:
        for method in METHODS:
            for headers in ({}, {"X-CSRFToken": token} if token else {}):
                response = client.open(path, method=method, headers=headers)
                assert response.status_code == 404, (method, path, response.status_code)
                # The hub's own 404 page: nothing of the dashboard's (its title, its words).
                assert b"Not Found" in response.data or response.is_json
                assert not any(w in response.data.lower() for w in (b"queues", b"workers", b"rq_dashboard"))


def test_anonymous_callers_get_404(client):
    assert_hidden(client, csrf_token(client))


def _without_csrf(body: bytes) -> bytes:
    """A page without its CSRF token (signed with the time: two pages a second apart differ)."""
    return re.sub(rb'name="csrf_token" value="[^"]*"', b"", body)


def spellings(path: str) -> list[str]:
    """Ways of writing a path that routing reads as that path: a slash doubled at each place,
    all of them doubled, a trailing one."""
    slashes = [i for i, c in enumerate(path) if c == "/"]
    doubled = [path[:i] + "/" + path[i:] for i in slashes]
    return doubled + [path.replace("/", "//"), path.rstrip("/") + "//"]


@pytest.mark.parametrize("role", [None, "admin"])
def test_every_spelling_of_a_dashboard_path_answers_as_an_unknown_path(client, make_user, role):
    """Issue #39, 2: ``/admin//rq/`` answered 308 or 405 (routing merges slashes) where an unknown
    path answers 404, which told that the dashboard exists."""
    if role:
        sign_in(client, make_user(role=role).email)
    for method in METHODS:
        # PATH_INFO as a server passes it: the test client would read a leading "//" as a host.
        unknown = client.open("/", method=method, environ_overrides={"PATH_INFO": "//no//such-place/"})
        assert unknown.status_code == 404
        for path in ["/admin/rq", "/admin/rq/", "/admin/rq/0/view/workers", "/admin/rq/requeue/webhooks"]:
            for spelling in spellings(path):
                response = client.open("/", method=method, environ_overrides={"PATH_INFO": spelling})
                assert (response.status_code, response.headers.get("Allow"), response.headers.get("Location")) \
                    == (404, None, None), (method, spelling, response.status_code)
                assert _without_csrf(response.data) == _without_csrf(unknown.data), (method, spelling)


@pytest.mark.parametrize("role", ["member", "admin", "super_admin"])
def test_organization_users_get_404_whatever_their_role(client, make_user, role):
    user = make_user(role=role)
    sign_in(client, user.email)
    assert_hidden(client, csrf_token(client, "/settings/integrations"))


def test_the_operator_sees_the_dashboard_on_rq_3(operator_client):
    page = operator_client.get("/admin/rq/")
    assert page.status_code == 200 and b"RQ" in page.data
    assert "'unsafe-eval'" in page.headers["Content-Security-Policy"]
    assert "_csrf_token=" in page.headers["Set-Cookie"]
    queue = get_queue("webhooks")
    job = queue.enqueue("hub.inbox.process_delivery", 1)
    queues = operator_client.get("/admin/rq/0/data/queues.json").json["queues"]
    assert {"name": "webhooks", "count": 1} in [{"name": q["name"], "count": q["count"]} for q in queues]
    jobs = operator_client.get("/admin/rq/0/data/jobs/webhooks/queued/10/asc/1.json").json
    assert [j["id"] for j in jobs["jobs"]] == [job.id]
    assert operator_client.get(f"/admin/rq/0/data/job/{job.id}.json").json["id"] == job.id
    assert operator_client.get("/admin/rq/0/data/workers.json").status_code == 200
    assert operator_client.get("/admin/rq/3/view").status_code == 404


def test_the_hub_keeps_its_strict_csp_off_the_dashboard(operator_client, client):
    for response in (client.get("/login"), operator_client.get("/login")):
        assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


def test_operator_changes_need_post_and_a_csrf_token(operator_client):
    queue = get_queue("webhooks")
    job = queue.enqueue("hub.inbox.process_delivery", 1)
    job.set_status("failed")
    queue.failed_job_registry.add(job, ttl=3600)
    assert operator_client.get("/admin/rq/requeue/webhooks").status_code == 405
    assert operator_client.post(f"/admin/rq/job/{job.id}/requeue").status_code == 400  # no token
    assert job.id in queue.failed_job_registry.get_job_ids()

    operator_client.get("/admin/rq/")
    token = operator_client.get_cookie("_csrf_token", path="/admin/rq").value
    response = operator_client.post(f"/admin/rq/job/{job.id}/requeue", headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.json == {"status": "OK"}
    assert Job.fetch(job.id, connection=get_redis(), serializer=queue.serializer).get_status() == "queued"


def test_an_operator_lands_on_the_dashboard_and_is_no_member_of_any_organization(app, make_operator,
                                                                                   make_user):
    make_user(role="admin")  # an organization exists, with data an operator must not see
    operator = make_operator()
    client = app.test_client()
    response = sign_in(client, operator.email, OPERATOR_PASSWORD)
    assert response.headers["Location"].endswith("/admin/rq/")
    for path in ("/settings/integrations", "/tests", "/integrations/tiny_example/"):
        response = client.get(path)
        assert response.status_code in (302, 404) and "/admin/rq" not in response.headers.get("Location", "")
    assert client.get("/api/v1/me").status_code == 401


def test_an_operator_signs_out_from_the_dashboard_and_home_is_the_dashboard(operator_client):
    """Issue #40, 7: the dashboard had no way out, and "/" showed a signed-in operator the
    sign-in page."""
    home = operator_client.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/admin/rq/")
    page = operator_client.get("/admin/rq/").get_data(as_text=True)
    form = re.search(r'<form method="post" action="/logout" class="hub-sign-out".*?</form>', page, re.S)
    assert form and "ops@wecp.example" in form.group(0) and ">Sign out</button>" in form.group(0)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.group(0)).group(1)
    response = operator_client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert operator_client.get("/admin/rq/").status_code == 404
    assert operator_client.get("/").headers["Location"].startswith("/login")


def test_a_removed_operator_is_signed_out_at_the_next_request(app, operator_client, runner):
    assert operator_client.get("/admin/rq/").status_code == 200
    result = runner.invoke(args=["operators", "remove", "--email", "ops@wecp.example"])
    assert result.exit_code == 0, result.output
    assert operator_client.get("/admin/rq/").status_code == 404


def test_operators_are_managed_from_the_cli_only(app, runner, make_user):
    result = runner.invoke(args=["operators", "add", "--email", "Ops@WeCP.example",
                                 "--password", OPERATOR_PASSWORD])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(db.select(Operator)).email == "ops@wecp.example"
    listed = runner.invoke(args=["operators", "list"])
    assert "ops@wecp.example" in listed.output and "never" in listed.output
    taken = runner.invoke(args=["operators", "add", "--email", "ops@wecp.example",
                                "--password", OPERATOR_PASSWORD])
    assert taken.exit_code != 0 and "taken" in taken.output
    short = runner.invoke(args=["operators", "add", "--email", "b@wecp.example", "--password", "short"])
    assert short.exit_code != 0
    user = make_user(role="admin")
    clash = runner.invoke(args=["operators", "add", "--email", user.email, "--password", OPERATOR_PASSWORD])
    assert clash.exit_code != 0
    assert not any("operator" in rule.rule for rule in app.url_map.iter_rules())  # no page makes one
    assert runner.invoke(args=["operators", "remove", "--email", "ops@wecp.example"]).exit_code == 0
    assert db.session.scalar(db.select(Operator)) is None


def test_readiness_details_are_for_operators_only(client, operator_client, admin_client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ok"}
    assert admin_client.get("/readyz").json == {"status": "ok"}
    ready = operator_client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"database": "ok", "redis": "ok"}
