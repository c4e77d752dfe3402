"""The providers' shared HTTP session: connections kept alive between jobs, the environment read once."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hub import http


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: list = []

    def setup(self):
        super().setup()
        self.connections.append(self.client_address)

    def do_GET(self):
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Counting.connections = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_calls_of_one_process_and_thread_share_one_connection(server):
    """Each job makes its own client; the calls still go over one kept-alive connection."""
    for n in range(3):
        assert http.session().get(f"{server}/v1/call/{n}", timeout=5).json() == {}
    assert len(_Counting.connections) == 1
    other = []
    worker = threading.Thread(target=lambda: other.append(http.session()))
    worker.start()
    worker.join()
    assert other[0] is not http.session()  # a thread of its own: requests sessions are not shared


def test_the_environment_is_read_once_per_host_as_requests_would(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.direct.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-bundle.pem")
    session = http._Session()
    settings = session.merge_environment_settings("https://api.provider.example/v1/x", {}, None, True, None)
    assert settings["proxies"]["https"] == "http://proxy.internal:3128"
    assert settings["verify"] == "/etc/ssl/our-bundle.pem"
    direct = session.merge_environment_settings("https://api.direct.example/v1/x", {}, None, True, None)
    assert "https" not in direct["proxies"]
    # Read once: a later change needs a restart, and costs no lookups per request meanwhile.
    monkeypatch.setenv("HTTPS_PROXY", "http://other.internal:3128")
    again = session.merge_environment_settings("https://api.provider.example/v1/y", {}, None, True, None)
    assert again["proxies"]["https"] == "http://proxy.internal:3128"
    # What a caller passes still wins.
    explicit = session.merge_environment_settings("https://api.provider.example/v1/z", {}, None, False, None)
    assert explicit["verify"] is False
