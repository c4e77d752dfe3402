"""Real Redis and PostgreSQL for the tests, the benchmarks and the demo: reuse what answers, else start private ones."""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
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


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of our own, which a fault scenario may stop and start."""

    def __init__(self):
        self.initdb, self.postgres, self.pg_ctl = _pg_bin("initdb"), _pg_bin("postgres"), _pg_bin("pg_ctl")
        if not self.initdb or not self.postgres:
            raise ServiceUnavailable("initdb/postgres are not installed (Debian package postgresql)")
        self.dir = tempfile.mkdtemp(prefix="hub-bench-pg-")
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            shutil.chown(self.dir, "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(self.run_as + [self.initdb, "-D", self.dir, "-U", "postgres", "--auth=trust"],
                       check=True, stdout=subprocess.DEVNULL)
        self.port = free_port()
        self.proc = None
        self.start()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/hub_bench"
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "hub_bench"')

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.run_as + [self.postgres, "-D", self.dir, "-p", str(self.port), "-k", self.dir,
                           "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, 60)
        deadline = time.monotonic() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                                connect_timeout=2).close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise ServiceUnavailable("private PostgreSQL did not start") from None
                time.sleep(0.2)

    def postmaster_pid(self) -> int | None:
        try:
            return int((Path(self.dir) / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, new connections refused, as in an outage."""
        if self.proc is None:
            return
        if self.pg_ctl:
            subprocess.run(self.run_as + [self.pg_ctl, "-D", self.dir, "-m", "fast", "-w", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        else:
            pid = self.postmaster_pid()
            if pid:
                os.kill(pid, signal.SIGINT)
        self.proc.wait(60)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres(private: bool):
    """(url, handle): a private cluster, or a fresh database on the server that answers."""
    if private:
        cluster = PrivatePostgres()
        return cluster.url, cluster
    database = PostgresDatabase()
    return database.url, database


