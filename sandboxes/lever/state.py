"""In-memory state of the Lever sandbox: accounts and their data, OAuth records, logs."""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SEED_PATH = Path(__file__).with_name("seed.json")

# Lever docs (/developer/documentation#webhooks): the origins a webhook condition can name.
ORIGINS = ("applied", "sourced", "referred", "university", "agency", "internal")


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


class NotFound(LookupError):
    """An id that does not exist in the account (or anywhere) was asked for."""


class Invalid(ValueError):
    """A request that names things the sandbox cannot accept (unknown stage, bad field)."""


@dataclass
class User:
    id: str
    name: str
    username: str
    email: str
    access_role: str
    created_at: int
    deactivated_at: int | None = None
    password: str | None = None

    @property
    def active(self) -> bool:
        return self.deactivated_at is None

    @property
    def is_super_admin(self) -> bool:
        return self.access_role == "super admin"


@dataclass
class Stage:
    id: str
    text: str


@dataclass
class Posting:
    id: str
    text: str
    state: str
    owner: str | None
    hiring_manager: str | None
    user: str | None
    categories: dict
    created_at: int
    updated_at: int
    tags: list = field(default_factory=list)
    confidentiality: str = "non-confidential"


@dataclass
class Application:
    id: str
    posting_id: str
    posting_owner: str | None
    posting_hiring_manager: str | None
    created_at: int
    user: str | None = None
    archived: dict | None = None


@dataclass
class Opportunity:
    id: str
    name: str
    contact: str
    emails: list
    stage: str
    origin: str
    owner: str | None
    created_at: int
    updated_at: int
    application: Application | None = None
    headline: str = ""
    location: str = ""
    phones: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    stage_changes: list = field(default_factory=list)
    followers: list = field(default_factory=list)
    archived: dict | None = None
    last_advanced_at: int | None = None


@dataclass
class Note:
    id: str
    opportunity_id: str
    value: str
    user_id: str | None
    perform_as: str | None
    secret: bool
    score: int | None
    created_at: int


@dataclass
class StoredFile:
    id: str
    opportunity_id: str
    name: str
    ext: str
    size: int
    content_type: str
    data: bytes
    uploaded_at: int


@dataclass
class Webhook:
    id: str
    event: str
    url: str
    signature_token: str
    conditions: dict | None
    created_at: int
    updated_at: int
    client_id: str | None = None


@dataclass
class AuthorizedApp:
    client_id: str
    scopes: list
    granted_by: str
    granted_at: int


@dataclass
class Account:
    id: str
    name: str
    webhook_toggles: dict
    users: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)
    postings: dict = field(default_factory=dict)
    opportunities: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    files: list = field(default_factory=list)
    webhooks: dict = field(default_factory=dict)
    authorized_apps: dict = field(default_factory=dict)

    def user(self, user_id: str) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise NotFound(f"User {user_id} not found") from None

    def stage(self, stage_id: str) -> Stage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise NotFound(f"Stage {stage_id} not found")

    def stage_index(self, stage_id: str) -> int:
        return [s.id for s in self.stages].index(stage_id)

    def posting(self, posting_id: str) -> Posting:
        try:
            return self.postings[posting_id]
        except KeyError:
            raise NotFound(f"Posting {posting_id} not found") from None

    def opportunity(self, opportunity_id: str) -> Opportunity:
        try:
            return self.opportunities[opportunity_id]
        except KeyError:
            raise NotFound(f"Opportunity {opportunity_id} not found") from None

    def super_admin(self) -> User | None:
        return next((u for u in self.users.values() if u.is_super_admin and u.active), None)


@dataclass
class Client:
    client_id: str
    client_secret: str
    name: str
    redirect_uris: list


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    account_id: str
    user_id: str
    scopes: list
    expires_at: float
    code_challenge: str | None = None
    used: bool = False


@dataclass
class AccessToken:
    id: str
    token: str
    account_id: str
    client_id: str
    scopes: list
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    family_id: str
    account_id: str
    client_id: str
    scopes: list
    issued_at: float
    rotated_at: float | None = None
    revoked: bool = False


@dataclass
class Delivery:
    id: str
    account_id: str
    webhook_id: str
    url: str
    event: str
    payload: dict
    attempts: list = field(default_factory=list)
    delivered: bool = False
    dropped: bool = False
    finished: bool = False


@dataclass
class Fault:
    id: str
    route: str
    error_rate: float
    status: int
    latency_ms: int
    storm_until: float | None
    drop_webhooks: bool
    drop_rate: float
    #: Seconds an injected 429 advertises in Retry-After (when SANDBOX_RETRY_AFTER is on).
    retry_after: float = 1.0


class SandboxState:
    """Everything the sandbox knows, guarded by one re-entrant lock.

    The sandbox is deliberately one process: this object is the only copy of the data, so
    running it under several worker processes would give each its own Lever.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        # Bumped on every reset so delivery threads of an older life stop quietly.
        self.generation = 0
        # Registered OAuth apps outlive resets, like apps registered with Lever outlive data.
        self.clients: dict[str, Client] = {}
        # Run-time config as create_app left it; a reset puts it back.
        self.initial_config: dict = {}
        # The webhook sender (webhooks.Dispatcher), started on first use.
        self.dispatcher = None
        self._clear()

    def _clear(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.consents: dict[str, dict] = {}
        self.faults: list[Fault] = []
        self.requests: list[dict] = []
        self.request_seq = 0
        self.deliveries: list[Delivery] = []
        self.buckets: dict[str, tuple[float, float]] = {}

    def reset(self, seed: dict | None) -> None:
        with self.lock:
            self.generation += 1
            self._clear()
            if seed:
                load_seed(self, seed)

    # --- lookups -------------------------------------------------------------------------

    def account(self, account_id: str) -> Account:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise NotFound(f"Account {account_id} not found") from None

    def find_opportunity(self, opportunity_id: str) -> tuple[Account, Opportunity]:
        for account in self.accounts.values():
            if opportunity_id in account.opportunities:
                return account, account.opportunities[opportunity_id]
        raise NotFound(f"Opportunity {opportunity_id} not found")

    def user_by_email(self, email: str) -> tuple[Account, User] | None:
        email = email.strip().lower()
        for account in self.accounts.values():
            for user in account.users.values():
                if user.email.lower() == email:
                    return account, user
        return None

    # --- mutations -------------------------------------------------------------------------

    def add_candidates(self, account_id: str, posting_id: str, stage_id: str,
                       candidates: list[dict], created_at: int | None = None) -> list[str]:
        """Create one opportunity (with one application) per candidate dict; no webhooks."""
        with self.lock:
            account = self.account(account_id)
            posting = account.posting(posting_id)
            account.stage(stage_id)
            ids = []
            for spec in candidates:
                opp = _new_opportunity(account, posting, stage_id, spec,
                                       spec.get("createdAt") or created_at or now_ms())
                account.opportunities[opp.id] = opp
                ids.append(opp.id)
            return ids

    def set_archived(self, account_id: str, opportunity_id: str, archived) -> tuple[Opportunity, dict | None] | None:
        """Archive (``archived`` a {archivedAt, reason} dict, or True) or unarchive an opportunity
        and its application; returns (opportunity, the archived value before) when it changed,
        None when it already was so."""
        with self.lock:
            opp = self.account(account_id).opportunity(opportunity_id)
            if bool(opp.archived) == bool(archived):
                return None
            before = opp.archived
            # Lever docs (/developer/documentation#opportunities): archived is {archivedAt, reason}
            # or null.
            opp.archived = (dict(archived) if isinstance(archived, dict) else
                            {"archivedAt": now_ms(), "reason": "withdrew"}) if archived else None
            if opp.application is not None:
                opp.application.archived = opp.archived
            opp.updated_at = now_ms()
            return opp, before

    def move(self, account_id: str, opportunity_ids: list[str], stage_id: str,
             user_id: str | None) -> list[tuple[Opportunity, str]]:
        """Move opportunities to a stage; returns (opportunity, from_stage) for real moves only."""
        with self.lock:
            account = self.account(account_id)
            account.stage(stage_id)
            opportunities = [account.opportunity(oid) for oid in opportunity_ids]
            changed = []
            at = now_ms()
            for opp in opportunities:
                if opp.stage == stage_id:
                    continue
                from_stage = opp.stage
                opp.stage = stage_id
                opp.stage_changes.append({
                    "toStageId": stage_id,
                    "toStageIndex": account.stage_index(stage_id),
                    "updatedAt": at,
                    "userId": user_id,
                })
                opp.updated_at = opp.last_advanced_at = at
                changed.append((opp, from_stage))
            return changed

    def add_note(self, account_id: str, opportunity_id: str, value: str, user_id: str | None,
                 perform_as: str | None, secret: bool = False, score: int | None = None,
                 created_at: int | None = None) -> Note:
        with self.lock:
            account = self.account(account_id)
            opp = account.opportunity(opportunity_id)
            note = Note(new_id(), opp.id, value, user_id, perform_as, bool(secret), score,
                        created_at or now_ms())
            account.notes.append(note)
            opp.updated_at = now_ms()
            return note

    def change_tags(self, account_id: str, opportunity_id: str, tags: list[str],
                    add: bool) -> Opportunity:
        with self.lock:
            opp = self.account(account_id).opportunity(opportunity_id)
            if add:
                opp.tags.extend(t for t in tags if t not in opp.tags)
            else:
                opp.tags = [t for t in opp.tags if t not in tags]
            opp.updated_at = now_ms()
            return opp


# --- seed and generated data ----------------------------------------------------------------

def read_seed(seed: Any) -> dict | None:
    """Turn a seed argument ("default", a path, a dict or None) into seed data."""
    if seed is None:
        return None
    if isinstance(seed, dict):
        return seed
    path = DEFAULT_SEED_PATH if seed == "default" else Path(seed)
    return json.loads(path.read_text(encoding="utf-8"))


def load_seed(state: SandboxState, seed: dict) -> None:
    for spec in seed.get("accounts", []):
        add_account(state, spec)
    generated = seed.get("generatedAccounts")
    if generated:
        generate_accounts(state, int(generated.get("count", 1)), generated.get("prefix", "org"),
                          candidates=int(generated.get("candidates", 0)), seed=generated.get("seed"))


def add_account(state: SandboxState, spec: dict) -> Account:
    """Create one account from its seed entry (users, stages, postings, candidates)."""
    with state.lock:
        if spec["id"] in state.accounts:
            raise Invalid(f"Account {spec['id']} exists already")
        account = Account(
            id=spec["id"],
            name=spec.get("name", spec["id"]),
            webhook_toggles={"candidateStageChange": False, **spec.get("webhookToggles", {})},
        )
        for u in spec.get("users", []):
            account.users[u["id"]] = User(
                id=u["id"], name=u["name"], username=u.get("username", u["email"].split("@")[0]),
                email=u["email"], access_role=u.get("accessRole", "team member"),
                created_at=u.get("createdAt", now_ms()), deactivated_at=u.get("deactivatedAt"),
                password=u.get("password"),
            )
        account.stages = [Stage(s["id"], s["text"]) for s in spec.get("stages", [])]
        for p in spec.get("postings", []):
            account.postings[p["id"]] = Posting(
                id=p["id"], text=p["text"], state=p.get("state", "published"),
                owner=p.get("owner"), hiring_manager=p.get("hiringManager"), user=p.get("user"),
                categories=p.get("categories", {}), tags=p.get("tags", []),
                confidentiality=p.get("confidentiality", "non-confidential"),
                created_at=p.get("createdAt", now_ms()),
                updated_at=p.get("updatedAt", p.get("createdAt", now_ms())),
            )
        state.accounts[account.id] = account
        for c in spec.get("candidates", []):
            state.add_candidates(account.id, c["posting"], c["stage"], [c])
        return account


def _new_opportunity(account: Account, posting: Posting, stage_id: str, spec: dict,
                     created_at: int) -> Opportunity:
    opp_id = spec.get("id") or new_id()
    emails = list(spec.get("emails", []))
    origin = spec.get("origin", "applied")
    if origin not in ORIGINS:
        raise Invalid(f"Unknown origin {origin!r}")
    application = Application(
        id=spec.get("applicationId") or new_id(), posting_id=posting.id,
        posting_owner=posting.owner, posting_hiring_manager=posting.hiring_manager,
        created_at=created_at,
    )
    owner = spec.get("owner", posting.owner)
    return Opportunity(
        id=opp_id, name=spec["name"], contact=spec.get("contact") or new_id(), emails=emails,
        stage=stage_id, origin=origin, owner=owner, created_at=created_at,
        updated_at=created_at, application=application, headline=spec.get("headline", ""),
        location=spec.get("location", ""), phones=spec.get("phones", []),
        tags=list(spec.get("tags", [])), sources=spec.get("sources", []),
        stage_changes=[{"toStageId": stage_id, "toStageIndex": account.stage_index(stage_id),
                        "updatedAt": created_at, "userId": owner}],
        followers=[owner] if owner else [], last_advanced_at=created_at,
    )


_FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "Linus", "Radia",
          "Ken", "Frances", "John", "Hedy", "Dennis", "Katherine", "Tim", "Sophie", "Niklaus"]
_LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Torvalds",
         "Perlman", "Thompson", "Allen", "Backus", "Lamarr", "Ritchie", "Johnson", "Wilson"]


def generate_candidates(state: SandboxState, account_id: str, count: int,
                        posting_id: str | None = None, stage_id: str = "applicant-new",
                        seed: int | None = None) -> list[str]:
    """Create `count` made-up candidates for benchmarks (default: first published posting)."""
    rng = random.Random(seed)
    with state.lock:
        account = state.account(account_id)
        if posting_id is None:
            published = [p for p in account.postings.values() if p.state == "published"]
            if not published:
                raise Invalid("Account has no published posting")
            posting_id = published[0].id
        specs = []
        for _ in range(count):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            tag = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
            specs.append({
                "name": f"{first} {last}",
                "emails": [f"{first}.{last}.{tag}@candidates.example".lower()],
                "origin": rng.choice(ORIGINS),
            })
        return state.add_candidates(account_id, posting_id, stage_id, specs)


#: The stages every generated account has, in pipeline order; built-in ones keep Lever's
#: readable ids, the others get a UUID of their own per account (as in Lever).
_GENERATED_STAGES = [("lead-new", "New lead"), ("lead-reached-out", "Reached out"),
                     ("lead-responded", "Responded"), ("applicant-new", "New applicant"),
                     (None, "Recruiter screen"), (None, "Assessment"),
                     (None, "Assessment complete"), (None, "On-site interview"),
                     ("offer", "Offer")]


def generated_account_spec(account_id: str, name: str, rng: random.Random) -> dict:
    """A seed entry for a made-up account shaped like ``acme``: its own users, stages, postings.

    Three active users (the Super Admin, a recruiter who owns the postings, a hiring manager),
    two published postings and a closed one; the "Candidate Stage Change" toggle is on.
    """
    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    domain = f"{account_id}.example"
    admin, recruiter, manager = uid(), uid(), uid()
    users = [(admin, "Owner", "super admin"), (recruiter, "Recruiter", "admin"),
             (manager, "Manager", "team member")]
    categories = {"team": "Engineering", "department": "R&D", "location": "Remote",
                  "commitment": "Full-time", "level": "Senior"}
    created = now_ms()
    return {
        "id": account_id, "name": name, "webhookToggles": {"candidateStageChange": True, "candidateArchiveChange": True},
        "users": [{"id": user_id, "name": f"{role} of {name}", "username": role.lower(),
                   "email": f"{role.lower()}@{domain}", "accessRole": access, "createdAt": created,
                   "deactivatedAt": None, "password": "sandbox"}
                  for user_id, role, access in users],
        "stages": [{"id": stage_id or uid(), "text": text} for stage_id, text in _GENERATED_STAGES],
        "postings": [{"id": uid(), "text": text, "state": posting_state, "owner": recruiter,
                      "hiringManager": manager, "user": recruiter, "categories": categories,
                      "createdAt": created}
                     for text, posting_state in (("Software Engineer", "published"),
                                                 ("Data Engineer", "published"),
                                                 ("Office Manager", "closed"))],
    }


def generate_accounts(state: SandboxState, count: int, prefix: str = "org", *,
                      candidates: int = 0, seed: int | None = None) -> list[str]:
    """Create ``count`` made-up accounts ``<prefix>-01``, ``<prefix>-02``, … (numbering goes on
    after the ones that exist), each with ``candidates`` generated candidates at applicant-new
    in its first published posting. The same ``seed`` gives the same ids."""
    if count < 0 or candidates < 0:
        raise Invalid("count and candidates must not be negative")
    if not prefix or not all(c.isalnum() or c in "-_" for c in prefix):
        raise Invalid("prefix must be letters, digits, - or _")
    created = []
    with state.lock:
        n = 0
        while len(created) < count:
            n += 1
            account_id = f"{prefix}-{n:02d}"
            if account_id in state.accounts:
                continue
            # One generator per account: the same seed gives the same ids whatever came before.
            rng = random.Random(f"{seed}:{account_id}") if seed is not None else random.Random()
            add_account(state, generated_account_spec(account_id, f"{prefix.title()} {n:02d}", rng))
            if candidates:
                generate_candidates(state, account_id, candidates, seed=rng.getrandbits(32))
            created.append(account_id)
    return created
