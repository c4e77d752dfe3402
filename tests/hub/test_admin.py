"""rq-dashboard at /admin/rq: admins only for every method, CSRF on changes, works with rq 3; probes."""
from __future__ import annotations

import pytest
from rq.job import Job

from hub.extensions import get_redis
from hub.jobs import get_queue
from tests.conftest import csrf_token, sign_in

PAGES = ["/admin/rq/", "/admin/rq/0/view/workers", "/admin/rq/0/data/queues.json",
         "/admin/rq/0/data/workers.json", "/admin/rq/0/data/jobs/webhooks/failed/10/asc/1.json"]
POSTS = ["/admin/rq/job/x/requeue", "/admin/rq/job/x/delete", "/admin/rq/requeue/webhooks",
         "/admin/rq/queue/webhooks/failed/empty", "/admin/rq/queue/webhooks/compact"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_get_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("path", POSTS)
def test_anonymous_post_is_refused_even_with_a_csrf_token(client, path):
    assert client.post(path).status_code in (400, 401)
    token = csrf_token(client)
    assert client.post(path, headers={"X-CSRFToken": token}).status_code == 401


def test_member_is_forbidden_for_every_method(client, make_user):
    member = make_user(role="member")
    sign_in(client, member.email)
    token = csrf_token(client, "/settings/integrations")
    for path in PAGES:
        assert client.get(path).status_code == 403, path
    for path in POSTS:
        assert client.post(path, headers={"X-CSRFToken": token}).status_code == 403, path


def test_admin_sees_the_dashboard_on_rq_3(admin_client):
    page = admin_client.get("/admin/rq/")
    assert page.status_code == 200 and b"RQ" in page.data
    assert "'unsafe-inline'" in page.headers["Content-Security-Policy"]
    assert "_csrf_token=" in page.headers["Set-Cookie"]
    queue = get_queue("webhooks")
    job = queue.enqueue("hub.jobs.process_delivery", 1)
    queues = admin_client.get("/admin/rq/0/data/queues.json").json["queues"]
    assert {"name": "webhooks", "count": 1} in [{"name": q["name"], "count": q["count"]} for q in queues]
    jobs = admin_client.get("/admin/rq/0/data/jobs/webhooks/queued/10/asc/1.json").json
    assert [j["id"] for j in jobs["jobs"]] == [job.id]
    assert admin_client.get(f"/admin/rq/0/data/job/{job.id}.json").json["id"] == job.id
    assert admin_client.get("/admin/rq/0/data/workers.json").status_code == 200
    assert admin_client.get("/admin/rq/3/view").status_code == 404


def test_admin_changes_need_post_and_a_csrf_token(admin_client):
    queue = get_queue("webhooks")
    job = queue.enqueue("hub.jobs.process_delivery", 1)
    job.set_status("failed")
    queue.failed_job_registry.add(job, ttl=3600)
    assert admin_client.get("/admin/rq/requeue/webhooks").status_code == 405
    assert admin_client.post(f"/admin/rq/job/{job.id}/requeue").status_code == 400  # no token
    assert job.id in queue.failed_job_registry.get_job_ids()

    admin_client.get("/admin/rq/")
    token = admin_client.get_cookie("_csrf_token", path="/admin/rq").value
    response = admin_client.post(f"/admin/rq/job/{job.id}/requeue", headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.json == {"status": "OK"}
    assert Job.fetch(job.id, connection=get_redis(), serializer=queue.serializer).get_status() == "queued"


def test_health_probes(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"database": "ok", "redis": "ok"}
