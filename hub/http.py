"""One HTTP session per process and thread, for the providers' API clients.

A new ``requests.Session`` per client meant a new connection (and, against a real provider, a
new TLS handshake) for every job, and every request read the environment again for proxies,
``.netrc`` and a CA bundle: ~2 % of a busy worker's CPU (docs/performance.md, B5). The session
here keeps its connections alive between jobs, and reads the environment once, when the
process first calls a provider: ``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` and
``CURL_CA_BUNDLE`` are honoured as requests would, but a change to them needs a restart.
"""
from __future__ import annotations

import os
import threading

import requests
from requests.utils import get_environ_proxies

from .metrics import count_provider_response

_local = threading.local()


class _Session(requests.Session):
    """The environment's settings resolved once per host, not on every request."""

    def __init__(self):
        super().__init__()
        # Authorization is always sent by the clients: no .netrc lookup per request.
        self.trust_env = False
        self._environment: dict[str, dict] = {}
        self.hooks["response"].append(count_provider_response)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        host = requests.utils.urlparse(url).netloc
        environment = self._environment.get(host)
        if environment is None:
            environment = self._environment[host] = {
                "proxies": get_environ_proxies(url),
                "verify": os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")}
        merged = dict(environment["proxies"])
        merged.update(proxies or {})
        if verify is True and environment["verify"]:
            verify = environment["verify"]
        return super().merge_environment_settings(url, merged, stream, verify, cert)


def session() -> requests.Session:
    """This process's and thread's session (a forked process makes its own: sockets are not shared)."""
    current = getattr(_local, "session", None)
    if current is None or _local.pid != os.getpid():
        current, _local.pid = _Session(), os.getpid()
        _local.session = current
    return current
