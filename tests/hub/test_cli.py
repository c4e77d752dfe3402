"""The ``hub`` command: its own commands, each explained in one line, and ``hub doctor``."""
from __future__ import annotations

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
