"""The demo: starts everything, says where to go, stops every child on Ctrl-C; its seed; --scripted."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests

from hub.extensions import db
from sandboxes.journey import DEMO_ADMIN
from tests.services import free_port
from tests.stack import ROOT, descendants, running, wait_until

pytestmark = pytest.mark.slow

WELCOME = "WeCP Integration Hub demo is running"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def demo_ports(sandboxes: int = 4) -> tuple[int, int, int]:
    """Ports for the hub, the first sandbox and Redis: the demo gives each further sandbox the port
    after the last, so those must be free too, and apart from the other two."""
    while True:
        first = free_port()
        if all(_free(first + i) for i in range(1, sandboxes)):
            break
    hub = free_port()
    redis_port = free_port()
    while {hub, redis_port} & set(range(first, first + sandboxes)) or hub == redis_port:
        hub, redis_port = free_port(), free_port()
    return hub, first, redis_port


class Demo:
    """`python -m sandboxes.demo` in its own session, as a terminal would run it; output collected."""

    def __init__(self, tmp_path, *args: str, ports: tuple[int, int, int] | None = None):
        self.port, self.sandbox_port, self.redis_port = ports or demo_ports()
        self.data_dir = tmp_path / "demo"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HUB_", "LEVER_", "SMTP_"))
               and k not in ("DATABASE_URL", "REDIS_URL")}
        env["PYTHONUNBUFFERED"] = "1"
        # Where the demo leaves its settings for the `hub` command (not the checkout's instance/).
        env["HUB_DEMO_SETTINGS"] = str(tmp_path / "demo-settings.env")
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandboxes.demo", "--port", str(self.port), "--sandbox-port",
             str(self.sandbox_port), "--redis-port", str(self.redis_port), "--data-dir",
             str(tmp_path / "demo"), *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.output = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.output.append(line.decode(errors="replace"))

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill_everything(self) -> None:
        """Last resort for a failed test, so it leaves nothing behind."""
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(10)


@pytest.fixture
def demo_run(tmp_path):
    started = []

    def start(*args, ports=None):
        demo = Demo(tmp_path, *args, ports=ports)
        started.append(demo)
        return demo
    yield start
    for demo in started:
        if demo.proc.poll() is None:
            demo.kill_everything()
        print(demo.text)  # shown when the test failed
        for log in sorted((tmp_path / "demo").glob("*.log")):
            print(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_starts_everything_and_stops_every_child(demo_run, sig):
    demo = demo_run()
    wait_until(lambda: WELCOME in demo.text or demo.proc.poll() is not None, 90,
               what="the demo's welcome")
    assert demo.proc.poll() is None, demo.text
    assert answers(f"http://127.0.0.1:{demo.port}/healthz")
    assert answers(f"http://127.0.0.1:{demo.sandbox_port}/")
    assert DEMO_ADMIN in demo.text and f"http://127.0.0.1:{demo.sandbox_port}/" in demo.text
    children = descendants(demo.proc.pid)
    # redis, sandbox, gunicorn master and its 2 workers, one RQ worker (and its scheduler).
    assert len(children) >= 6, children

    os.killpg(demo.proc.pid, sig)  # a terminal's Ctrl-C reaches the foreground process group
    assert demo.wait_exit(15) == 0, demo.text
    assert "stopping" in demo.text
    wait_until(lambda: not any(running(pid) for pid in children), 5,
               what=f"the demo's children {children} to end")
    assert not answers(f"http://127.0.0.1:{demo.port}/healthz")


def test_demo_refuses_a_port_in_use(demo_run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        demo = demo_run("--port", str(taken))  # click keeps the last --port
        code = demo.wait_exit(60)
    assert code != 0
    assert f"port {taken} (for the hub) is in use" in demo.text, demo.text
    assert "--port" in demo.text and "Traceback" not in demo.text


def test_demo_seed_creates_the_admin_and_sample_test_once(app):
    from hub.assessments.demo import SAMPLE_TITLE
    from hub.assessments.models import AssessmentTest
    from hub.models import User
    from tests.workers import worker_env

    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "sandboxes.demo", "seed"], cwd=ROOT,
                                env=worker_env(app), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    db.session.expire_all()
    users = db.session.scalars(db.select(User)).all()
    assert [u.email for u in users] == [DEMO_ADMIN] and users[0].role == "admin"
    from hub.models import Operator
    from sandboxes.journey import DEMO_OPERATOR

    assert [o.email for o in db.session.scalars(db.select(Operator))] == [DEMO_OPERATOR]
    tests = db.session.scalars(db.select(AssessmentTest)).all()
    assert [(t.title, t.organization_id) for t in tests] == \
        [(SAMPLE_TITLE, users[0].organization_id)]
    assert len(tests[0].questions) >= 3


def test_scripted_demo_walks_the_journey_and_stops(demo_run):
    demo = demo_run("--scripted")
    code = demo.wait_exit(120)
    assert code == 0, demo.text
    for step in ("sign in to WeCP", "connect Lever", "Lever shows Active",
                 "switch Candidate Stage Change on", "link the sample test",
                 "a new candidate is moved", "the Lever card confirms the first stage change",
                 "the invitation email arrives", "the candidate takes the test",
                 "the score is a note in Lever"):
        assert f"✓ {step}" in demo.text, demo.text
    assert "✗" not in demo.text and "10 of 10 steps passed" in demo.text
    for step in ("connect Greenhouse Harvest", "candidates who pass move to Onsite",
                 "Greenhouse shows the result", "through Harvest: the score is a note on the candidate"):
        assert f"✓ {step}" in demo.text, demo.text


def test_a_restarted_demo_is_still_connected(demo_run):
    """The sandbox keeps its grants, webhooks and switches in the data directory: after a
    restart the Lever card is Active and a new candidate moved in Lever is invited (before, the
    restarted sandbox had forgotten the hub's tokens and the card said "Revoked")."""
    from sandboxes.journey import DEMO_PASSWORD, invitation_link, sign_in
    from sandboxes.lever.journey import link_sample_test, move_new_candidate

    first = demo_run("--scripted")
    assert first.wait_exit(120) == 0, first.text
    assert (first.data_dir / "wecp_lever-sandbox.json").exists()
    again = demo_run(ports=(first.port, first.sandbox_port, first.redis_port))
    wait_until(lambda: WELCOME in again.text or again.proc.poll() is not None, 90,
               what="the restarted demo's welcome")
    assert again.proc.poll() is None, again.text
    # Issue #40, 8: the sessions of the first run are still there (its Redis keeps its data in
    # the data directory), and the welcome does not ask to connect a hub that is connected.
    import redis

    assert (first.data_dir / "redis.rdb").exists()
    assert list(redis.Redis(port=again.redis_port).scan_iter("hub:session:*")), "the first run's sign-in"
    welcome = again.text.split("Next steps")[1]
    assert "Lever is connected already" in welcome and "Connect, sign in to the sandbox" not in welcome
    hub, sandbox = f"http://127.0.0.1:{again.port}", f"http://127.0.0.1:{again.sandbox_port}"
    http = requests.Session()
    sign_in(http, hub, DEMO_ADMIN, DEMO_PASSWORD)
    card = http.get(f"{hub}/settings/integrations", timeout=10).text
    assert 'id="integration-wecp_lever" data-status="Active"' in " ".join(card.split()), card
    posting, stage = link_sample_test(http, hub)  # linked by the first run already
    move_new_candidate(sandbox, posting, stage, "after.restart@example.com")
    assert "/t/" in invitation_link(http, hub, "after.restart@example.com")
    assert_the_hub_command_reaches_the_demo(again)
    os.killpg(again.proc.pid, signal.SIGINT)
    assert again.wait_exit(15) == 0, again.text


def assert_the_hub_command_reaches_the_demo(demo: Demo) -> None:
    """Issue #40, 2: `hub` beside a running demo used another database (an empty
    instance/hub.sqlite3: "no such table: user_account"). Now it finds the demo's settings, from
    any folder; and the file the welcome names can be sourced by a shell."""
    from sandboxes.stack import hub_command

    assert f"source {demo.data_dir / 'hub.env'}" in demo.text
    elsewhere = demo.data_dir.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    listed = subprocess.run(hub_command("users", "list"), cwd=elsewhere, env=demo.env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and DEMO_ADMIN in listed.stdout, listed.stdout + listed.stderr
    assert "using the demo's settings" in listed.stderr
    doctor = subprocess.run(hub_command("doctor"), cwd=elsewhere, env=demo.env, capture_output=True,
                            text=True, timeout=60)
    assert re.search(r"ok +database +\w+ answers; schema up to date", doctor.stdout), doctor.stdout
    assert not (elsewhere / "instance").exists()
    sourced = subprocess.run(["bash", "-c", f"source {demo.data_dir / 'hub.env'} && echo $DATABASE_URL"],
                             env=demo.env, capture_output=True, text=True, timeout=10)
    assert sourced.stdout.strip() == f"sqlite:///{demo.data_dir / 'demo.sqlite3'}"
