"""Shared constants and small clients for the Lever sandbox's own tests."""
from __future__ import annotations

import json
import threading
import time

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ACME = "acme"
OLIVIA = "b1f2c3d4-0000-4000-8000-000000000001"  # Super Admin
HANK = "b1f2c3d4-0000-4000-8000-000000000002"  # team member
FORMER = "b1f2c3d4-0000-4000-8000-000000000004"  # deactivated
BACKEND = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"
FRONTEND = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0fa"
ASSESSMENT = "8a2d4b6c-1e3f-4a5b-9c7d-0e1f2a3b4c5d"
ADA = "250d8f03-738a-4bba-a671-8a3d73477145"
ALAN = "250d8f03-738a-4bba-a671-8a3d73477146"

CLIENT_ID, CLIENT_SECRET = "test-app", "test-secret"
REDIRECT_URI = "http://127.0.0.1:59999/integrations/wecp_lever/connect/callback"
ALL_SCOPES = ("offline_access opportunities:write:admin notes:write:admin stages:read:admin "
              "tags:read:admin webhooks:write:admin postings:read:admin users:read:admin "
              "files:write:admin")


class Api:
    """requests against /v1 with a bearer token."""

    def __init__(self, base_url: str, access_token: str):
        self.base = base_url + "/v1"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {access_token}"

    def __getattr__(self, method):
        def call(path, **kwargs):
            kwargs.setdefault("timeout", 10)
            return self.http.request(method.upper(), self.base + path, **kwargs)
        return call


def token_request(sandbox, **form):
    form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
    return requests.post(sandbox.url + "/oauth/token", data=form, timeout=10)


class Receiver:
    """A local HTTP endpoint that records webhook calls and answers scripted statuses."""

    def __init__(self):
        self.calls: list[dict] = []
        self.statuses: list[int] = []  # answered in order; 200 once used up
        self.delay = 0.0
        self.lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @Request.application
    def _wsgi(self, request):
        time.sleep(self.delay)
        with self.lock:
            self.calls.append({"body": json.loads(request.get_data()),
                               "headers": dict(request.headers), "path": request.path})
            status = self.statuses.pop(0) if self.statuses else 200
        return Response("ok", status=status)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} webhook calls, got {len(self.calls)}")
            time.sleep(0.02)
        return list(self.calls)

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
