"""The Greenhouse sandbox's world, in memory: jobs with their hiring plans, candidates and their
applications, the take-home tests sent through the assessment partner, the partner's set-up
(the key and the four addresses Greenhouse Support enters: docs/providers/greenhouse.md#assessment-flow)
and Harvest's tokens, notes and moves.

One ``World`` per app, guarded by one lock; ids are integers, as Greenhouse's are.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

#: The calls of the Assessment Partner API, each an address Greenhouse Support enters.
CALLS = ("list_tests", "send_test", "test_status", "response_error")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class Stage:
    id: int
    name: str
    #: A take-home test stage offers the partner's tests; the one picked for this job.
    take_home: bool = False
    partner_test_id: str | None = None
    partner_test_name: str | None = None


@dataclass
class Job:
    id: int
    name: str
    stages: list[Stage]


@dataclass
class Candidate:
    id: int
    first_name: str
    last_name: str
    email: str


@dataclass
class Application:
    id: int
    candidate_id: int
    job_id: int
    stage_id: int
    status: str = "active"


@dataclass
class TakeHomeTest:
    """One test sent to one candidate (Greenhouse's take-home test instance)."""

    id: int
    application_id: int
    partner_test_id: str
    partner_test_name: str
    sent_by: str
    sent_at: str = field(default_factory=now)
    partner_interview_id: str | None = None
    #: sent | complete, or what the partner last answered to test_status.
    status: str = "sending"
    score: float | None = None
    profile_url: str | None = None
    metadata: dict = field(default_factory=dict)
    patches: int = 0
    checked_at: str | None = None
    problem: str | None = None


@dataclass
class Fault:
    """An answer the sandbox gives instead of serving a request: ``status`` (e.g. 500, 429) or
    ``timeout`` (it waits ``seconds`` first), for the next ``remaining`` requests to ``route``."""

    id: int
    route: str
    status: int | None = None
    timeout: bool = False
    seconds: float = 15.0
    remaining: int = 1
    retry_after: int | None = None


@dataclass
class Note:
    """A note on a candidate, written through Harvest."""

    id: int
    candidate_id: int
    body: str
    visibility: str
    created_at: str = field(default_factory=now)


@dataclass
class Harvest:
    """Harvest v3's side: the partner's codes and tokens (value → expiry), the notes and moves
    made through it, and the rate-limit window."""

    codes: dict = field(default_factory=dict)
    access_tokens: dict = field(default_factory=dict)
    refresh_tokens: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    moves: list = field(default_factory=list)
    token_calls: int = 0
    #: Calls allowed per 10-second window (docs/providers/greenhouse.md#harvest-rate-limits: 50 in
    #: Greenhouse's example).
    rate_limit: int = 50
    window_start: float = 0.0
    window_calls: int = 0


class World:
    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._ids = itertools.count(1001)
            self.partner = {"key": "", **{call: "" for call in CALLS}}
            self.jobs: dict[int, Job] = {}
            self.candidates: dict[int, Candidate] = {}
            self.applications: dict[int, Application] = {}
            self.tests: dict[int, TakeHomeTest] = {}
            self.faults: list[Fault] = []
            self.log: list[dict] = []  # calls to the partner and the partner's calls here
            self.errors_reported: list[dict] = []  # response_error calls Greenhouse made
            self.harvest = Harvest()
            self._seed()

    def next_id(self) -> int:
        return next(self._ids)

    def _seed(self) -> None:
        for name in ("Backend Engineer", "Data Analyst"):
            job_id = self.next_id()
            stages = [Stage(self.next_id(), stage) for stage in ("Application Review", "Phone Screen")]
            stages.append(Stage(self.next_id(), "Take Home Test", take_home=True))
            stages += [Stage(self.next_id(), stage) for stage in ("Onsite", "Offer")]
            self.jobs[job_id] = Job(job_id, name, stages)
        first = next(iter(self.jobs.values()))
        for first_name, last_name in (("Grace", "Hopper"), ("Alan", "Turing")):
            self.add_candidate(first.id, first_name, last_name,
                               f"{first_name.lower()}.{last_name.lower()}@example.com")

    def add_candidate(self, job_id: int, first_name: str, last_name: str, email: str) -> Application:
        with self.lock:
            job = self.jobs[job_id]
            candidate = Candidate(self.next_id(), first_name, last_name, email)
            self.candidates[candidate.id] = candidate
            application = Application(self.next_id(), candidate.id, job.id, job.stages[0].id)
            self.applications[application.id] = application
            return application

    def stage(self, job: Job, stage_id: int) -> Stage | None:
        return next((s for s in job.stages if s.id == stage_id), None)

    def fault_for(self, route: str) -> Fault | None:
        """The next fault set for ``route``, spent by this request; None: serve it."""
        with self.lock:
            for fault in self.faults:
                if fault.route == route and fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
        return None

    def record(self, **entry) -> None:
        with self.lock:
            self.log.append({"at": now(), **entry})
            del self.log[:-500]
