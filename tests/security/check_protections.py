"""Prove the security suite bites: remove each protection, run the tests meant to catch it, restore.

Run from the repository root: ``python tests/security/check_protections.py [name filter ...]``.
Each line says whether the tests failed with the protection removed (they must). The source
file is restored after each run, even when the run is interrupted.
"""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
MUTATIONS = [
  ("tenant: get_scoped_or_404 ignores the org", "hub/auth.py",
   "if obj is None or obj.organization_id != current_org_id():", "if obj is None:",
   "tests/security/test_tenant_isolation.py::test_every_url_with_an_id_refuses_another_organizations_object"),
  ("tenant: scoped() ignores the org", "hub/auth.py",
   "return db.select(model).filter_by(organization_id=current_org_id(), **filters)", "return db.select(model).filter_by(**filters)",
   "tests/security/test_tenant_isolation.py::test_no_page_or_api_list_shows_another_organizations_data"),
  ("tenant: webhook found by plugin, not endpoint id", "hub/webhooks.py",
   "plugin_key=plugin_key, endpoint_id=endpoint_id))", "plugin_key=plugin_key).order_by(Connection.created_at).limit(1))",
   "tests/security/test_tenant_isolation.py::test_webhook_for_org_a_cannot_reach_org_b"),
  ("roles: admin_required lets members in", "hub/auth.py",
   "        if not g.user.is_admin:\n            abort(403)\n        return view(*args, **kwargs)", "        return view(*args, **kwargs)",
   "tests/security/test_roles.py::test_member_cannot_connect_lever"),
  ("roles: job dashboard lets organization users in", "hub/admin.py",
   '    return g.get("operator") is not None', '    return g.get("operator") is not None or g.get("user") is not None',
   "tests/security/test_roles.py::test_only_operators_reach_the_job_dashboard"),
  ("roles: job dashboard answers others with 403/401, not 404, before its own guard", "hub/admin.py",
   "    app.before_request_funcs.setdefault(None, []).insert(0, _hide)", "",
   "tests/hub/test_admin.py::test_anonymous_callers_get_404"),
  ("dashboard: the hub's strict CSP on the dashboard too (it stays on Loading...)", "hub/admin.py",
   "script-src 'self' 'unsafe-inline' 'unsafe-eval'; ", "script-src 'self'; ",
   "tests/e2e/test_csp.py::test_the_job_dashboard_renders_for_operators_in_chromium"),
  ("dashboard: its relaxed CSP on every page of the hub", "hub/admin.py",
   '    if request.blueprint == "rq_dashboard" and _allowed():', "    if True:",
   "tests/hub/test_admin.py::test_the_hub_keeps_its_strict_csp_off_the_dashboard"),
  ("jobs: a failed job's exception text reaches RQ (and the dashboard)", "hub/jobs.py",
   '                raise JobFailed(f"{name} failed: {type(exc).__name__}") from None', "                raise",
   "tests/hub/test_jobs.py::test_rq_keeps_only_the_name_and_error_type_of_a_failed_job"),
  ("jobs: Lever's error message in the exception's text", "plugins/wecp_lever/lever.py",
   "answered {status or 'nothing'}{' ' + code if code else ''}\")", "answered {status or 'nothing'}: {message}\")",
   "tests/plugins/wecp_lever/test_lever_client.py::test_an_error_answer_quoting_a_candidate_leaves_no_text_in_the_exception"),
  ("jobs: RQ keeps an outcome's words", "hub/jobs.py",
   "        return result.public()", "        return result.describe()",
   "tests/e2e/test_browser_journey.py"),
  ("tenant: the work page shows every organization's failed email", "hub/outbox.py",
   "        return model.organization_id == organization_id", "        return sa.true()",
   "tests/hub/test_work.py::test_an_admin_sees_failed_and_paused_work_of_every_kind_and_nothing_of_another_org"),
  ("tenant: Retry on the work page finds another organization's row", "hub/work.py",
   "sa.select(model.id).where(model.id == ident, mine)", "sa.select(model.id).where(model.id == ident)",
   "tests/hub/test_work.py::test_retry_runs_failed_work_again_and_another_orgs_row_is_404"),
  ("roles: an operator counts as an organization user", "hub/auth.py",
   "            g.operator = operator\n", "            g.operator = operator\n            g.user = db.session.scalar(db.select(User).limit(1))\n",
   "tests/hub/test_admin.py::test_an_operator_lands_on_the_dashboard_and_is_no_member_of_any_organization"),
  ("roles: report link lookup by invitation token too", "hub/assessments/services.py",
   "return db.session.scalar(db.select(Result).filter_by(report_token_hash=hash_token(token)))",
   "return db.session.scalar(db.select(Result).where((Result.report_token_hash == hash_token(token)) | (Result.invitation_id == db.select(Invitation.id).filter_by(token_hash=hash_token(token)).scalar_subquery())))",
   "tests/security/test_roles.py::test_a_report_link_opens_only_its_own_report"),
  ("csrf: cookie API calls unchecked", "hub/api.py",
   "        csrf.protect()", "        pass",
   "tests/security/test_web_hygiene.py::test_csrf_required_on_cookie_api_calls"),
  ("csrf: CSRFProtect off", "hub/config.py",
   "WTF_CSRF_TIME_LIMIT=None)", "WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_ENABLED=False)",
   "tests/security/test_web_hygiene.py::test_csrf_required_on_every_state_changing_form"),
  ("csrf: sign-out by GET", "hub/auth.py",
   '@bp.route("/logout", methods=["POST"])', '@bp.route("/logout", methods=["GET", "POST"])',
   "tests/security/test_web_hygiene.py::test_sign_out_is_post_only_with_csrf"),
  ("oauth: state not compared", "hub/connections.py",
   "            or not hmac.compare_digest(str(started[\"state\"]), given):", "            or False:",
   "tests/security/test_oauth.py::test_oauth_state_is_used_once_and_cannot_be_altered"),
  ("oauth: state not bound to the browser", "hub/connections.py",
   "    started = session.pop(_session_key(plugin_key), None)", "    started = {'state': request.args.get('state'), 'user_id': g.user.id, 'verifier': None}",
   "tests/security/test_oauth.py::test_oauth_callback_needs_the_state_of_a_connect_started_in_this_browser"),
  ("oauth: no PKCE", "hub/plugin.py",
   "    pkce: bool = True", "    pkce: bool = False",
   "tests/security/test_oauth.py::test_oauth_uses_pkce_s256"),
  ("redirect: next followed blindly", "hub/auth.py",
   "    parts = urlsplit(target)\n", "    return target\n",
   "tests/security/test_web_hygiene.py -k open_redirect"),
  ("cookie: SameSite/HttpOnly unset", "hub/config.py",
   'app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",', 'app.config.update(SESSION_COOKIE_HTTPONLY=False, SESSION_COOKIE_SAMESITE=None,',
   "tests/security/test_web_hygiene.py::test_production_session_cookie_is_secure_httponly_lax"),
  ("cookie: not Secure in production", "hub/config.py",
   '    cfg["SESSION_COOKIE_SECURE"] = True', '    pass',
   "tests/security/test_web_hygiene.py::test_production_session_cookie_is_secure_httponly_lax"),
  ("headers: no frame-ancestors", "hub/security.py",
   "; frame-ancestors 'none'\")", "\")",
   "tests/security/test_web_hygiene.py::test_security_headers_on_pages_api_errors_and_candidate_links"),
  ("headers: no nosniff", "hub/security.py",
   'response.headers.setdefault("X-Content-Type-Options", "nosniff")', 'pass',
   "tests/security/test_web_hygiene.py::test_security_headers_on_pages_api_errors_and_candidate_links"),
  ("headers: no HSTS in production", "hub/security.py",
   'response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")', 'pass',
   "tests/security/test_web_hygiene.py::test_production_session_cookie_is_secure_httponly_lax"),
  ("sign-in: no rate limit", "hub/auth.py",
   "        if _too_many_attempts(email):", "        if False:",
   "tests/security/test_web_hygiene.py::test_sign_in_attempts_are_rate_limited_across_processes"),
  ("sign-in: distinct error for unknown email", "hub/auth.py",
   '            error = "Email or password is incorrect."', '            error = "Email or password is incorrect." if user else "No such account."',
   "tests/security/test_web_hygiene.py::test_sign_in_failures_give_one_generic_error"),
  ("session: not rotated at sign-in", "hub/auth.py",
   "                session.clear()\n                session[\"user_id\"]", "                session[\"user_id\"]",
   "tests/security/test_web_hygiene.py::test_sign_in_rotates_the_session"),
  ("body: no MAX_CONTENT_LENGTH", "hub/config.py",
   '    "MAX_CONTENT_LENGTH": "1048576",', '    "MAX_CONTENT_LENGTH": "104857600",',
   "tests/security/test_web_hygiene.py::test_request_bodies_over_1_mib_get_413"),
  ("secrets: link paths not redacted", "hub/security.py",
   '    re.compile(r"(/[tr]/)[A-Za-z0-9_-]{20,}"),', '',
   "tests/security/test_secrets.py::test_no_secret_reaches_any_log_during_a_full_journey tests/security/test_secrets.py::test_gunicorn_access_and_error_logs_hide_link_tokens"),
  ("secrets: redaction only on handlers known at start", "hub/security.py",
   "    logging.setLogRecordFactory(factory)", "    [h.addFilter(RedactingFilter()) for h in logging.getLogger().handlers]",
   "tests/security/test_secrets.py::test_log_redaction_reaches_handlers_added_after_start"),
  ("secrets: tracebacks not redacted", "hub/security.py",
   "    if record.exc_text:\n        record.exc_text = redact(record.exc_text)", "",
   "tests/security/test_secrets.py::test_error_pages_and_error_logs_show_no_secrets"),
  ("secrets: link token stored in clear", "hub/assessments/models.py",
   "    return hashlib.sha256(token.encode()).hexdigest()", "    return token",
   "tests/security/test_secrets.py::test_no_secret_is_stored_in_clear"),
  ("secrets: error page echoes the exception", "hub/__init__.py",
   "            return render_template(\"hub/error.html\", error=exc), exc.code",
   "            return render_template(\"hub/error.html\", error=exc) + repr(getattr(exc, 'original_exception', '')), exc.code",
   "tests/security/test_secrets.py::test_error_pages_and_error_logs_show_no_secrets"),
  ("input: unknown API fields ignored", "hub/assessments/schemas.py",
   "class AssessmentTestSchema(Schema):\n", "class AssessmentTestSchema(Schema):\n    class Meta:\n        unknown = 'exclude'\n",
   "tests/security/test_input.py -k unknown_fields"),
  ("input: autoescape off", "hub/__init__.py",
   "    _configure_logging(app)\n", "    _configure_logging(app)\n    app.jinja_env.autoescape = False\n",
   "tests/security/test_input.py -k escaped"),
  ("input: title may hold line breaks", "hub/assessments/schemas.py",
   'validate.Regexp(r"[^\\x00-\\x1f\\x7f]*\\Z", error="Enter a title on one line.")', 'validate.Length(max=200)',
   "tests/security/test_input.py -k malformed_fields"),
]
only = sys.argv[1:]
rows = []
for name, path, old, new, tests in MUTATIONS:
    if only and not any(o in name for o in only):
        continue
    f = ROOT / path
    original = f.read_text()
    assert original.count(old) == 1, (name, original.count(old))
    f.write_text(original.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
        tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
        rows.append((name, "FAILS (good)" if r.returncode == 1 else f"rc={r.returncode}", tail))
    finally:
        f.write_text(original)
    print(rows[-1], flush=True)
