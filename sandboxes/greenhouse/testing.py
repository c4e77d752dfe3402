"""Test helpers: run the Greenhouse sandbox on a background thread and drive its admin API."""
from __future__ import annotations

import threading

import requests
from werkzeug.serving import make_server

from .app import create_app


class AdminClient:
    """The ``/_sandbox`` admin API; every method returns the decoded ``data``."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/") + "/_sandbox"
        self.timeout = timeout
        self.http = requests.Session()

    def _call(self, method: str, path: str, body=None):
        response = self.http.request(method, self.base_url + path, json=body, timeout=self.timeout)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()["data"]

    def reset(self):
        return self._call("POST", "/reset")

    def set_partner(self, key: str, urls: dict[str, str]):
        """What Greenhouse Support enters: the customer's key and the partner's four addresses."""
        return self._call("PUT", "/partner", {"key": key, **urls})

    def add_fault(self, route: str = "patch", **settings) -> int:
        return self._call("POST", "/faults", {"route": route, **settings})["id"]

    def clear_faults(self):
        return self._call("DELETE", "/faults")

    def add_candidate(self, job_id: int, first_name: str, last_name: str, email: str) -> dict:
        return self._call("POST", f"/jobs/{job_id}/candidates",
                          {"first_name": first_name, "last_name": last_name, "email": email})

    def move(self, application_id: int, stage: str):
        return self._call("POST", f"/applications/{application_id}/stage", {"stage": stage})

    def choose_test(self, job_id: int, partner_test_id: str):
        return self._call("POST", f"/jobs/{job_id}/take_home_test", {"partner_test_id": partner_test_id})

    def send_test(self, application_id: int) -> dict:
        return self._call("POST", f"/applications/{application_id}/send_test")

    def harvest(self) -> dict:
        """Harvest's side: notes, moves, token calls."""
        return self._call("GET", "/harvest")

    def revoke_harvest(self):
        return self._call("POST", "/harvest/revoke")

    def set_harvest_rate_limit(self, limit: int):
        return self._call("PUT", "/harvest/rate_limit", {"limit": limit})

    def state(self) -> dict:
        return self._call("GET", "/state")

    def job_id(self, name: str) -> int:
        return next(job["id"] for job in self.state()["jobs"] if job["name"] == name)

    def take_home_tests(self) -> list[dict]:
        return self.state()["take_home_tests"]


class ThreadSandbox:
    def __init__(self, server, thread, url: str):
        self.server, self.thread, self.url = server, thread, url
        self.admin = AdminClient(url)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def start_sandbox(config: dict | None = None, port: int = 0) -> ThreadSandbox:
    """The sandbox on ``127.0.0.1:port`` (any free port by default), on a daemon thread."""
    server = make_server("127.0.0.1", port, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return ThreadSandbox(server, thread, f"http://127.0.0.1:{server.server_port}")
