"""The Greenhouse sandbox: a recruiter's pages, Greenhouse Support's partner set-up, the
completion receiver WeCP PATCHes, and an admin API for tests (``/_sandbox``).

It is a test double: no sign-in, no CSRF, everything in memory in one process. Never expose it
beyond localhost.
"""
from __future__ import annotations

import threading

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for

from . import harvest, partner
from .partner import PartnerProblem
from .state import CALLS, Fault, TakeHomeTest, World, now

#: WeCP's Harvest partner client in the sandbox (Greenhouse Partner Support issues the real one).
HARVEST_CLIENT_ID, HARVEST_CLIENT_SECRET = "wecp-harvest-demo", "sandbox-harvest-secret"
#: Where a take-home test's completion is PATCHed (docs/providers/greenhouse.md#mark-complete).
TAKE_HOME_PATH = "/integrations/testing_partners/take_home_tests/"


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update({"SANDBOX_RECRUITER": "recruiter@acme.example",
                       "SANDBOX_HARVEST_CLIENT_ID": HARVEST_CLIENT_ID,
                       "SANDBOX_HARVEST_CLIENT_SECRET": HARVEST_CLIENT_SECRET, **(config or {})})
    world = World()
    app.extensions["greenhouse_sandbox"] = world
    app.register_blueprint(harvest.bp)

    def job_or_404(job_id: int):
        job = world.jobs.get(job_id)
        if job is None:
            abort(404)
        return job

    def application_or_404(application_id: int):
        found = world.applications.get(application_id)
        if found is None:
            abort(404)
        return found

    # --- a recruiter's pages -----------------------------------------------------------------

    @app.get("/")
    def home():
        return render_template("greenhouse/home.html", world=world, calls=CALLS)

    @app.route("/support", methods=["GET", "POST"])
    def support():
        """Greenhouse Support enters the partner's key and addresses for the customer."""
        if request.method == "POST":
            with world.lock:
                world.partner.update({name: request.form.get(name, "").strip() for name in ("key", *CALLS)})
            return redirect(url_for("home"))
        return render_template("greenhouse/support.html", partner=world.partner, calls=CALLS)

    @app.get("/jobs/<int:job_id>")
    def job(job_id):
        found = job_or_404(job_id)
        tests, problem = [], None
        if any(s.take_home and not s.partner_test_id for s in found.stages) and world.partner["key"]:
            try:
                tests = partner.list_tests(world)
            except PartnerProblem as exc:
                problem = str(exc)
        applications = [a for a in world.applications.values() if a.job_id == job_id]
        return render_template("greenhouse/job.html", world=world, job=found, tests=tests, problem=problem,
                               applications=applications, message=request.args.get("message"))

    @app.post("/jobs/<int:job_id>/stages/<int:stage_id>/test")
    def choose_test(job_id, stage_id):
        found = job_or_404(job_id)
        stage = found and world.stage(found, stage_id)
        if stage is None or not stage.take_home:
            abort(404)
        chosen = request.form.get("partner_test_id", "")
        try:
            names = {t["partner_test_id"]: t["partner_test_name"] for t in partner.list_tests(world)}
        except PartnerProblem as exc:
            return redirect(url_for("job", job_id=job_id, message=str(exc)))
        if chosen not in names:
            return redirect(url_for("job", job_id=job_id, message="pick one of the partner's tests"))
        stage.partner_test_id, stage.partner_test_name = chosen, names[chosen]
        return redirect(url_for("job", job_id=job_id))

    @app.post("/jobs/<int:job_id>/candidates")
    def add_candidate(job_id):
        job_or_404(job_id)
        form = request.form
        if not form.get("email"):
            return redirect(url_for("job", job_id=job_id, message="a candidate needs an email address"))
        world.add_candidate(job_id, form.get("first_name", ""), form.get("last_name", ""), form["email"])
        return redirect(url_for("job", job_id=job_id))

    @app.post("/applications/<int:application_id>/move")
    def move(application_id):
        application = application_or_404(application_id)
        stage = world.stage(world.jobs[application.job_id], request.form.get("stage_id", type=int) or 0)
        if stage is None:
            abort(400)
        application.stage_id = stage.id
        return redirect(url_for("job", job_id=application.job_id))

    @app.post("/applications/<int:application_id>/send_test")
    def send_test_button(application_id):
        """The recruiter's "Send Test" on a candidate in the take-home test stage."""
        application = application_or_404(application_id)
        try:
            send(application, request.host_url.rstrip("/"), app.config["SANDBOX_RECRUITER"])
            message = "Test sent."
        except (PartnerProblem, ValueError) as exc:
            message = f"The test was not sent: {exc}"
        return redirect(url_for("job", job_id=application.job_id, message=message))

    @app.get("/people/<int:candidate_id>")
    def person(candidate_id):
        candidate = world.candidates.get(candidate_id)
        if candidate is None:
            abort(404)
        applications = [a for a in world.applications.values() if a.candidate_id == candidate_id]
        tests = [t for t in world.tests.values() if world.applications[t.application_id].candidate_id == candidate_id]
        notes = [n for n in world.harvest.notes if n.candidate_id == candidate_id]
        return render_template("greenhouse/person.html", candidate=candidate, applications=applications,
                               tests=tests, world=world, notes=notes)

    def send(application, base_url: str, sent_by: str) -> TakeHomeTest:
        job = world.jobs[application.job_id]
        stage = world.stage(job, application.stage_id)
        if stage is None or not stage.take_home:
            raise ValueError("the candidate is not in a take-home test stage")
        if not stage.partner_test_id:
            raise ValueError("pick the stage's test first")
        candidate = world.candidates[application.candidate_id]
        with world.lock:
            test = TakeHomeTest(world.next_id(), application.id, stage.partner_test_id, stage.partner_test_name, sent_by)
            world.tests[test.id] = test
        body = {"partner_test_id": test.partner_test_id,
                "candidate": {"first_name": candidate.first_name, "last_name": candidate.last_name,
                              "preferred_name": None, "resume_url": None, "phone_number": None,
                              "email": candidate.email,
                              "greenhouse_profile_url": f"{base_url}/people/{candidate.id}?application_id={application.id}"},
                "sent_by": sent_by, "url": f"{base_url}{TAKE_HOME_PATH}{test.id}"}
        try:
            test.partner_interview_id = partner.send_test(world, body, {
                "partner_test_id": test.partner_test_id, "partner_test_name": test.partner_test_name,
                "candidate_email": candidate.email})
            test.status = "sent"
        except PartnerProblem as exc:
            test.status, test.problem = "not sent", str(exc)
            raise
        return test

    # --- the completion receiver ---------------------------------------------------------------

    @app.route(f"{TAKE_HOME_PATH}<int:test_id>", methods=["PATCH"])
    def mark_complete(test_id):
        """The partner says a test is complete; Greenhouse then reads ``test_status``."""
        fault = world.fault_for("patch")
        world.record(direction="from partner", call="PATCH", test=test_id, fault=fault.id if fault else None)
        answer = harvest.injected(fault)
        if answer is not None:
            return answer
        test = world.tests.get(test_id)
        if test is None or test.partner_interview_id is None:
            return jsonify({"message": "no such take-home test"}), 404
        application = world.applications[test.application_id]
        # docs/providers/greenhouse.md#assessment-flow: only active, unhired candidates are updated.
        if application.status != "active":
            return jsonify({"message": "the application is not active"}), 404
        with world.lock:
            test.patches += 1
        threading.Thread(target=check_status, args=(test,), daemon=True).start()
        return "", 200

    def check_status(test: TakeHomeTest) -> None:
        candidate = world.candidates[world.applications[test.application_id].candidate_id]
        try:
            answer = partner.test_status(world, test.partner_interview_id, {
                "partner_test_id": test.partner_test_id, "partner_test_name": test.partner_test_name,
                "candidate_email": candidate.email})
        except PartnerProblem as exc:
            test.problem = str(exc)
            return
        with world.lock:
            test.status = answer["partner_status"]
            test.score = answer.get("partner_score")
            test.profile_url = answer.get("partner_profile_url")
            test.metadata = dict(answer.get("metadata") or {})
            test.checked_at, test.problem = now(), None

    # --- the admin API (tests and the demo) ----------------------------------------------------

    @app.post("/_sandbox/reset")
    def admin_reset():
        world.reset()
        return jsonify({"data": {"reset": True}})

    @app.put("/_sandbox/partner")
    def admin_partner():
        body = request.get_json(force=True)
        with world.lock:
            world.partner.update({k: str(v) for k, v in body.items() if k in ("key", *CALLS)})
        return jsonify({"data": world.partner | {"key": "…" if world.partner["key"] else ""}})

    @app.post("/_sandbox/faults")
    def admin_fault():
        body = request.get_json(force=True)
        with world.lock:
            fault = Fault(world.next_id(), body.get("route", "patch"), status=body.get("status"),
                          timeout=bool(body.get("timeout")), seconds=float(body.get("seconds", 15)),
                          remaining=int(body.get("count", 1)), retry_after=body.get("retry_after"))
            world.faults.append(fault)
        return jsonify({"data": {"id": fault.id}})

    @app.delete("/_sandbox/faults")
    def admin_clear_faults():
        with world.lock:
            world.faults.clear()
        return jsonify({"data": {"cleared": True}})

    @app.post("/_sandbox/jobs/<int:job_id>/candidates")
    def admin_add_candidate(job_id):
        job_or_404(job_id)
        body = request.get_json(force=True)
        application = world.add_candidate(job_id, body.get("first_name", ""), body.get("last_name", ""), body["email"])
        return jsonify({"data": {"application_id": application.id, "candidate_id": application.candidate_id}})

    @app.post("/_sandbox/applications/<int:application_id>/stage")
    def admin_move(application_id):
        application = application_or_404(application_id)
        job = world.jobs[application.job_id]
        name = request.get_json(force=True).get("stage")
        stage = next((s for s in job.stages if s.name == name), None)
        if stage is None:
            abort(400)
        application.stage_id = stage.id
        return jsonify({"data": {"stage_id": stage.id}})

    @app.post("/_sandbox/jobs/<int:job_id>/take_home_test")
    def admin_choose_test(job_id):
        job = job_or_404(job_id)
        stage = next(s for s in job.stages if s.take_home)
        chosen = str(request.get_json(force=True)["partner_test_id"])
        names = {t["partner_test_id"]: t["partner_test_name"] for t in partner.list_tests(world)}
        stage.partner_test_id, stage.partner_test_name = chosen, names[chosen]
        return jsonify({"data": {"stage_id": stage.id}})

    @app.post("/_sandbox/applications/<int:application_id>/send_test")
    def admin_send(application_id):
        application = application_or_404(application_id)
        try:
            test = send(application, request.host_url.rstrip("/"), app.config["SANDBOX_RECRUITER"])
        except (PartnerProblem, ValueError) as exc:
            return jsonify({"error": str(exc)}), 409
        return jsonify({"data": {"take_home_test_id": test.id, "partner_interview_id": test.partner_interview_id}})

    @app.get("/_sandbox/state")
    def admin_state():
        with world.lock:
            return jsonify({"data": {
                "jobs": [{"id": j.id, "name": j.name, "stages": [vars(s) for s in j.stages]} for j in world.jobs.values()],
                "applications": [vars(a) for a in world.applications.values()],
                "take_home_tests": [vars(t) for t in world.tests.values()],
                "errors_reported": list(world.errors_reported),
                "log": list(world.log)}})

    return app
