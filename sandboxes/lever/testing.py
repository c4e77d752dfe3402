"""Test helpers: run the sandbox on a background thread and drive its admin API and consent flow."""
from __future__ import annotations

import re
import threading
import time
from html import unescape
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from werkzeug.serving import make_server

from .app import create_app


class AdminClient:
    """A tiny client for the /_sandbox admin API; every method returns the decoded JSON."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/") + "/_sandbox"
        self.timeout = timeout
        self.http = requests.Session()

    def _call(self, method: str, path: str, body=None, params=None):
        response = self.http.request(method, self.base_url + path, json=body, params=params,
                                     timeout=self.timeout)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def reset(self, seed="default"):
        return self._call("POST", "/reset", {"seed": seed})

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str],
                   name: str = "WeCP"):
        return self._call("POST", "/clients", {"client_id": client_id, "client_secret":
                                               client_secret, "name": name,
                                               "redirect_uris": list(redirect_uris)})

    def configure(self, **settings):
        return self._call("PATCH", "/config", settings)

    def add_accounts(self, count: int, prefix: str = "org", candidates: int = 0,
                     seed: int | None = None) -> list[str]:
        """Generated accounts (see state.generate_accounts); their ids."""
        body = {"count": count, "prefix": prefix, "candidates": candidates, "seed": seed}
        return self._call("POST", "/accounts", body)["data"]["accounts"]

    def add_candidates(self, account_id: str, posting_id: str, stage_id: str,
                       count: int | None = None, candidates: list[dict] | None = None) -> list[str]:
        body = {"posting_id": posting_id, "stage_id": stage_id}
        body.update({"candidates": candidates} if candidates is not None else {"count": count})
        return self._call("POST", f"/accounts/{account_id}/candidates", body)["data"]

    def move(self, account_id: str, opportunity_ids: list[str], stage_id: str,
             user_id: str | None = None) -> int:
        body = {"opportunity_ids": list(opportunity_ids), "stage_id": stage_id}
        if user_id is not None:
            body["user_id"] = user_id
        return self._call("POST", f"/accounts/{account_id}/move", body)["data"]["moved"]

    def patch_opportunity(self, opportunity_id: str, **fields):
        return self._call("PATCH", f"/opportunities/{opportunity_id}", fields)

    def set_toggle(self, account_id: str, on: bool):
        return self._call("PUT", f"/accounts/{account_id}/webhook-toggles",
                          {"candidateStageChange": on})["data"]

    def revoke_app(self, account_id: str, client_id: str):
        return self._call("POST", f"/accounts/{account_id}/authorized-apps/{client_id}/revoke")

    def mint_tokens(self, account_id: str, client_id: str, scope: str | None = None) -> dict:
        body = {"client_id": client_id}
        if scope is not None:
            body["scope"] = scope
        return self._call("POST", f"/accounts/{account_id}/tokens", body)

    def add_fault(self, route: str = "", **settings) -> str:
        return self._call("POST", "/faults", {"route": route, **settings})["data"]["id"]

    def clear_faults(self):
        return self._call("DELETE", "/faults")

    def requests_log(self, since: int = 0) -> list[dict]:
        return self._call("GET", "/requests", params={"since": since})["data"]

    def deliveries(self, webhook_id: str | None = None) -> list[dict]:
        params = {"webhook_id": webhook_id} if webhook_id else None
        return self._call("GET", "/deliveries", params=params)["data"]

    def wait_for_deliveries(self, count: int, timeout: float = 10.0, finished: bool = True,
                            webhook_id: str | None = None) -> list[dict]:
        """Poll until `count` deliveries exist (and are finished, by default)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.deliveries(webhook_id)
            if len(found) >= count and (not finished or all(d["finished"] for d in found)):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} deliveries, have {found}")
            time.sleep(0.02)

    def notes(self, account_id: str) -> list[dict]:
        return self._call("GET", f"/accounts/{account_id}/notes")["data"]

    def webhooks(self, account_id: str) -> list[dict]:
        return self._call("GET", f"/accounts/{account_id}/webhooks")["data"]

    def state(self, account_id: str) -> dict:
        return self._call("GET", f"/accounts/{account_id}/state")["data"]


class SandboxServer:
    """A running sandbox: `.url`, `.app`, `.admin`, `.stop()`."""

    def __init__(self, app, host: str, port: int):
        self.app = app
        self._server = make_server(host, port, app, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self.admin = AdminClient(self.url)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="lever-sandbox-server", daemon=True)
        self._thread.start()

    @property
    def audience(self) -> str:
        return self.url + "/v1/"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def authorize(self, client_id: str, redirect_uri: str, scope: str, *,
                  email: str = "olivia@acme.example", password: str = "sandbox",
                  audience: str | None = "default", state: str | None = "xyz",
                  decision: str = "accept", extra: dict | None = None) -> dict:
        """Walk the consent flow like a browser; returns the query of the final redirect.

        audience="default" sends this server's audience; None leaves it out.
        """
        params = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
                  "scope": scope, "prompt": "consent"}
        if audience is not None:
            params["audience"] = self.audience if audience == "default" else audience
        if state is not None:
            params["state"] = state
        params.update(extra or {})
        browser = requests.Session()
        authorize_url = f"{self.url}/authorize?{urlencode(params)}"
        page = browser.get(authorize_url, allow_redirects=False, timeout=10)
        if page.is_redirect:
            return _redirect_query(page)
        browser.post(f"{self.url}/login", data={"email": email, "password": password,
                                                "next": authorize_url[len(self.url):]},
                     allow_redirects=False, timeout=10)
        page = browser.get(authorize_url, allow_redirects=False, timeout=10)
        if page.is_redirect:
            return _redirect_query(page)
        match = re.search(r'name="consent_id" value="([^"]+)"', page.text)
        if match is None:
            return {"page_status": page.status_code, "page": page.text}
        answer = browser.post(f"{self.url}/authorize/decision",
                              data={"consent_id": unescape(match.group(1)), "decision": decision},
                              allow_redirects=False, timeout=10)
        return _redirect_query(answer)


def _redirect_query(response) -> dict:
    location = response.headers["Location"]
    query = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
    query["_location"] = location
    return query


def start_sandbox(config: dict | None = None, port: int = 0,
                  host: str = "127.0.0.1") -> SandboxServer:
    """Start a sandbox on a background thread (port 0 = any free port)."""
    return SandboxServer(create_app(config), host, port)
