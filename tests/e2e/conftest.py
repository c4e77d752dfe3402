"""End-to-end fixtures: one real stack per module (reset between tests) and a real Chromium."""
from __future__ import annotations

import os
import re
import shutil

import pytest
import redis

from tests.services import PostgresDatabase
from tests.stack import ROOT, HubStack

ARTIFACTS = ROOT / "test-artifacts"
ADMIN_EMAIL = "admin@acme.example"
ADMIN_PASSWORD = "e2e admin password"

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure: save the page's screenshot and HTML, and attach the stack's logs."""
    report = yield
    if report.failed:
        where = ARTIFACTS / _slug(item.nodeid)
        page = item.funcargs.get("page")
        if page is not None and not page.is_closed():
            where.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(where / f"{report.when}.png"), full_page=True)
                (where / f"{report.when}.html").write_text(page.content())
                report.sections.append(("browser", f"page {page.url}; screenshot and HTML in "
                                                   f"{where}"))
            except Exception as exc:  # a crashed page must not hide the real failure
                report.sections.append(("browser", f"no screenshot: {exc}"))
        stack = item.funcargs.get("stack")
        if stack is not None:
            report.sections.append(("stack logs", stack.logs()))
    return report


# --- the stack ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack_options():
    """Override in a module to change the stack: keyword arguments of ``HubStack``."""
    return {"workers": 1}


@pytest.fixture(scope="module")
def _module_stack(request, postgres_db, redis_server, stack_options):
    # A database of its own per module, on the suite's server: gunicorn and the workers keep
    # connections open, so sharing the session database with other modules would block their
    # schema resets.
    database = PostgresDatabase(admin_url=postgres_db.admin_url)
    # Redis database 1: the rest of the suite flushes database 0 between tests.
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(redis_url).flushdb()  # nothing left by the previous module's stack
    artifacts = ARTIFACTS / "stack" / _slug(request.module.__name__)
    shutil.rmtree(artifacts, ignore_errors=True)
    stack = HubStack(artifacts, database=database.url, redis_url=redis_url, **stack_options)
    try:
        stack.start()
    except BaseException:
        print(stack.logs())
        stack.stop()
        database.drop()
        raise
    yield stack
    stack.stop()
    database.drop()
    assert not stack.orphans, f"needed SIGKILL to stop: {stack.orphans}"


@pytest.fixture
def stack(_module_stack):
    """The module's running stack, emptied: no users, a freshly seeded sandbox, no emails."""
    _module_stack.reset()
    return _module_stack


@pytest.fixture
def admin_account(stack):
    """(email, password) of a WeCP admin in the stack's database."""
    stack.create_user(ADMIN_EMAIL, ADMIN_PASSWORD, "admin")
    return ADMIN_EMAIL, ADMIN_PASSWORD


# --- the browser ----------------------------------------------------------------------------

def chromium_path() -> str | None:
    path = os.environ.get("HUB_CHROMIUM") or "/usr/bin/chromium"
    return path if os.path.exists(path) and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, under Playwright. Never downloads a browser."""
    path = chromium_path()
    if path is None:
        reason = ("!!! CHROMIUM NOT FOUND (HUB_CHROMIUM or /usr/bin/chromium): BROWSER TESTS "
                  "SKIPPED. Install Debian's chromium (./run test does it as root).")
        print("\n" + reason)
        pytest.skip(reason)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    # Playwright gives launch() a fresh, temporary --user-data-dir (and refuses one in args),
    # removed when the browser closes; each test also gets a context of its own.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class BrowserProblems(list):
    """Console errors, CSP violations, uncaught exceptions and failed requests of one test."""

    def watch(self, page) -> None:
        page.on("console", lambda msg: self.console(page, msg))
        page.on("pageerror", lambda exc: self.append(f"uncaught exception on {page.url}: {exc}"))
        page.on("requestfailed", lambda req: self.request_failed(req))

    def request_failed(self, request) -> None:
        # Leaving a page (a reload, a click) aborts what it was still loading: not a fault.
        # A server's error answers are not failures here; the console reports them.
        if "ERR_ABORTED" not in (request.failure or ""):
            self.append(f"request failed: {request.method} {request.url} ({request.failure})")

    def console(self, page, msg) -> None:
        if msg.type != "error":
            return
        source = (msg.location or {}).get("url", "")
        # Chromium asks every site for /favicon.ico on its own; neither server has one.
        if source.endswith("/favicon.ico"):
            return
        self.append(f"console error on {page.url}: {msg.text} ({source or 'no source'})")


# Reports every CSP violation, including those Chromium does not log to the console.
_CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
                ' at ' + e.sourceFile + ':' + e.lineNumber);
});
"""


@pytest.fixture
def page(browser, request):
    """A fresh browser context and page; the test fails if the browser reported any problem."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    context.add_init_script(_CSP_LISTENER)
    problems = BrowserProblems()
    page = context.new_page()
    problems.watch(page)
    context.on("page", problems.watch)
    page.problems = problems
    yield page
    if problems and not page.is_closed():
        where = ARTIFACTS / _slug(request.node.nodeid)
        where.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(where / "problems.png"), full_page=True)
        (where / "problems.html").write_text(page.content())
    context.close()
    assert not problems, "the browser reported problems:\n" + "\n".join(problems)
