"""Real Redis and PostgreSQL for tests and benchmarks: reuse what answers, else start private ones."""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from urllib.parse import urlsplit, urlunsplit


class ServiceUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise ServiceUnavailable(f"nothing answered on port {port} within {timeout}s")


class RedisServer:
    """A private, throwaway redis-server (no persistence) that a test may stop and start again."""

    def __init__(self, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.proc = None
        self.start()
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _pg_answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception:
        return False


class PostgresDatabase:
    """A fresh database for this test run on a server that answers, else on a private cluster."""

    def __init__(self, admin_url: str | None = None):
        self.cluster_dir = None
        self.proc = None
        admin_url = admin_url or os.environ.get("TEST_POSTGRES_URL") or \
            "postgresql://postgres@127.0.0.1:5432/postgres"
        if not _pg_answers(admin_url):
            admin_url = self._start_private_cluster()
        self.admin_url = admin_url
        self.name = f"hub_test_{uuid.uuid4().hex[:10]}"
        self._execute(f'CREATE DATABASE "{self.name}"')
        parts = urlsplit(admin_url)
        self.url = urlunsplit(parts._replace(path="/" + self.name))
        atexit.register(self.drop)

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def _start_private_cluster(self) -> str:
        initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
        if not initdb or not postgres:
            raise ServiceUnavailable("no PostgreSQL answers and initdb/postgres are not installed "
                                     "(Debian package postgresql)")
        self.cluster_dir = tempfile.mkdtemp(prefix="hub-pg-")
        port = free_port()
        run_as = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            shutil.chown(self.cluster_dir, "postgres")
            run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(run_as + [initdb, "-D", self.cluster_dir, "-U", "postgres", "--auth=trust"],
                       check=True, stdout=subprocess.DEVNULL)
        self.proc = subprocess.Popen(run_as + [postgres, "-D", self.cluster_dir, "-p", str(port),
                                               "-k", self.cluster_dir, "-c", "listen_addresses=127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port, 60)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while not _pg_answers(url):
            if time.monotonic() > deadline:
                raise ServiceUnavailable("private PostgreSQL did not start")
            time.sleep(0.2)
        return url

    def drop(self) -> None:
        try:
            self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except Exception:
            pass
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None
        if self.cluster_dir:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self.cluster_dir = None
