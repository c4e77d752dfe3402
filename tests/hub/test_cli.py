"""The ``hub`` command: its own commands, each explained in one line, and ``hub doctor``."""
from __future__ import annotations

import os
import re

from click.testing import CliRunner

from hub.cli import main


def test_hub_help_lists_the_hub_s_commands_each_with_a_line_not_flask_s():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    commands = dict(re.findall(r"^  ([a-z-]+)\s{2,}(\S.*)$", result.output.split("Commands:")[1], re.M))
    assert {"db", "doctor", "events", "keys", "operators", "users", "worker", "api-tokens"} <= set(commands)
    assert all(line.strip() for line in commands.values())  # every command says what it is for
    assert not {"run", "shell", "routes"} & set(commands)  # Flask's development commands
    assert "--app" not in result.output and "--env-file" not in result.output
    # Still there for whoever needs them.
    assert CliRunner().invoke(main, ["routes", "--help"]).exit_code == 0


def test_doctor_says_what_answers_and_what_to_fix(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["doctor"])
    lines = {line.split()[1]: line for line in result.output.splitlines() if line[:4] in ("ok  ", "FIX ")}
    assert lines["redis"].startswith("ok") and "answers PING" in lines["redis"]
    assert lines["smtp"].startswith("ok") and "outbox" in lines["smtp"]  # no SMTP_URL in development
    assert "database" in lines
    # Redis away: the line says so and what to check; the command fails.
    app.extensions.pop("hub.redis", None)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    result = runner.invoke(args=["doctor"])
    [redis_line] = [line for line in result.output.splitlines() if " redis " in line]
    assert redis_line.startswith("FIX") and "check REDIS_URL" in redis_line
    assert result.exit_code != 0 and "checks need fixing" in result.output


def test_a_database_without_the_hub_s_tables_says_what_to_run(tmp_path):
    """Issue #40, 2: `hub users list` on an empty database answered with a traceback ("no such
    table: user_account"); it says which database and what to run."""
    import subprocess
    import sys

    from sandboxes.stack import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "LEVER_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}", HUB_QUEUE_MODE="inline")
    result = subprocess.run([sys.executable, "-m", "hub.cli", "users", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"sqlite:///{tmp_path / 'empty.sqlite3'} has no hub tables yet: run `hub db upgrade` first" in result.stderr


def test_hub_beside_a_demo_reads_the_demo_s_settings_and_the_environment_wins(tmp_path, monkeypatch):
    from hub.cli import _demo_settings, read_settings

    settings = tmp_path / "demo.env"
    settings.write_text("# a comment\nexport DATABASE_URL='sqlite:////x y/demo.sqlite3'\nexport REDIS_URL=redis://h:1/0\n")
    assert read_settings(settings) == {"DATABASE_URL": "sqlite:////x y/demo.sqlite3", "REDIS_URL": "redis://h:1/0"}
    monkeypatch.setenv("HUB_DEMO_SETTINGS", str(settings))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://mine:2/0")
    assert _demo_settings() == {"DATABASE_URL": "sqlite:////x y/demo.sqlite3"}
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/hub")
    assert _demo_settings() == {}  # a database named in the environment: no demo
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("HUB_ENV", "production")
    assert _demo_settings() == {}
