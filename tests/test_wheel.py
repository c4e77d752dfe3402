"""The built wheel: the hub, its plugins and every migration history; no sandbox, test or benchmark."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_ships_the_hub_and_its_migrations_but_no_sandbox(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hub/__init__.py" in names and "plugins/wecp_lever/plugin.py" in names
    assert "migrations/env.py" in names and "migrations/versions/0006_durable_work.py" in names
    assert "plugins/wecp_lever/migrations/versions/wecp_lever_0006_durable_work.py" in names
    assert "plugins/wecp_lever/templates/wecp_lever/index.html" in names
    leaked = [n for n in names if n.split("/")[0] in ("sandboxes", "tests", "bench")]
    assert leaked == [], leaked[:10]
    assert not [n for n in names if n.endswith("seed.json")]


@pytest.mark.slow
def test_the_readme_s_production_commands_run_from_the_installed_wheel_in_an_empty_folder(
        tmp_path, postgres_db, redis_server):
    """Issue #40, 16: the README served `wsgi:app`, which the wheel does not carry ("No module named
    'wsgi'" outside the source tree). The wheel alone, in an empty folder, on production settings:
    `hub db upgrade`, `hub users create`, and gunicorn serving `hub:create_app()`."""
    import os
    import re
    import shlex

    import requests

    from hub.crypto import generate_key
    from sandboxes.services import free_port
    from tests.stack import wait_until

    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                              str(next(wheels.glob("*.whl")))], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    readme = (ROOT / "README.md").read_text()
    served = shlex.split(re.search(r"^gunicorn (.+?)\s+#", readme, re.M).group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "LEVER_", "GREENHOUSE_", "SMTP_"))}
    env.update(PYTHONPATH=str(site), HUB_ENV="production", DATABASE_URL=postgres_db.url, REDIS_URL=redis_server.url,
               SECRET_KEY="Vq3-Zt8pLr2_Wx9KmN4cYb7Hs1Dj6Gf0", HUB_ENCRYPTION_KEYS=generate_key(),
               HUB_BASE_URL="https://hub.example", HUB_TRUSTED_HOSTS="hub.example", SMTP_URL="smtp://mail.example:587",
               LEVER_CLIENT_ID="client-id", LEVER_CLIENT_SECRET="client-secret",
               GREENHOUSE_HARVEST_CLIENT_ID="harvest-id", GREENHOUSE_HARVEST_CLIENT_SECRET="harvest-secret")

    def hub(*args):
        done = subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=empty, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout
    where = subprocess.run([sys.executable, "-c", "import hub; print(hub.__file__)"], cwd=empty, env=env,
                           capture_output=True, text=True, timeout=60).stdout
    assert where.startswith(str(site)), where  # the installed wheel, not the checkout
    hub("db", "upgrade")
    hub("users", "create", "--org", "Acme", "--email", "admin@acme.example", "--role", "admin",
        "--password", "correct horse battery")
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", *served[-1:]]
    proc = subprocess.Popen(argv, cwd=empty, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def answers():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", headers={"Host": "hub.example"},
                                    timeout=2).status_code == 200
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
                return False
        wait_until(answers, 60, 0.2, "gunicorn serving the installed hub")
        login = requests.get(f"http://127.0.0.1:{port}/login", headers={"Host": "hub.example"}, timeout=5)
        assert login.status_code == 200 and "Sign in" in login.text
    finally:
        proc.terminate()
        proc.wait(20)
    assert list(empty.iterdir()) == []  # nothing written beside it
