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
