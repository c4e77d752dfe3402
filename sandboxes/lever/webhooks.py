"""Webhook delivery: Lever's signature, matching by event and origin, retries on threads."""
from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import secrets
import threading
import time
from queue import SimpleQueue

import requests

from .limits import drop_delivery
from .state import Delivery, Opportunity, SandboxState, new_id, now_ms

STAGE_CHANGE = "candidateStageChange"
ARCHIVE_CHANGE = "candidateArchiveChange"
DELIVERY_TIMEOUT_SECONDS = 10
SENDER_THREADS = 16


def sign(signature_token: str, token: str, triggered_at: int) -> str:
    # Lever docs (/developer/documentation#webhooks, "Verifying webhook signatures"): hex
    # HMAC-SHA256 keyed with the webhook's signatureToken over token + triggeredAt.
    message = (token + str(triggered_at)).encode("utf-8")
    return hmac.new(signature_token.encode("utf-8"), message, hashlib.sha256).hexdigest()


def matches(hook, event: str, opp: Opportunity) -> bool:
    if hook.event != event:
        return False
    origins = ((hook.conditions or {}).get("origins"))
    # Lever docs (/developer/documentation#webhooks): a webhook with origin conditions only
    # fires for opportunities of those origins.
    return origins is None or opp.origin in origins


def _signed(signature_token: str, event: str, data: dict) -> dict:
    """A delivery body as Lever sends it: dated now, a fresh token, signed."""
    triggered_at = now_ms()
    token = secrets.token_hex(16)
    return {"triggeredAt": triggered_at, "event": event,
            "signature": sign(signature_token, token, triggered_at), "token": token, "data": data}


def stage_change_payload(signature_token: str, opp: Opportunity, from_stage: str) -> dict:
    # candidateId is Lever's legacy name for the opportunity id.
    return _signed(signature_token, STAGE_CHANGE, {
        "opportunityId": opp.id, "candidateId": opp.id, "contactId": opp.contact,
        "fromStageId": from_stage, "toStageId": opp.stage})


def archive_change_payload(signature_token: str, opp: Opportunity, from_archived: dict | None) -> dict:
    # Lever docs (/developer/documentation#webhooks): fromArchived/toArchived are null or
    # {archivedAt, reason}.
    return _signed(signature_token, ARCHIVE_CHANGE, {
        "opportunityId": opp.id, "candidateId": opp.id, "contactId": opp.contact,
        "fromArchived": from_archived, "toArchived": opp.archived})


def notify_stage_changes(state: SandboxState, config, account_id: str,
                         changes: list[tuple[Opportunity, str]]) -> list[Delivery]:
    """Queue one delivery per (change, matching webhook) unless the account's toggle is off."""
    return _notify(state, config, account_id, STAGE_CHANGE, changes, stage_change_payload)


def notify_archive_change(state: SandboxState, config, account_id: str, opp: Opportunity,
                          from_archived: dict | None) -> list[Delivery]:
    """Queue a candidateArchiveChange delivery per matching webhook unless its toggle is off."""
    return _notify(state, config, account_id, ARCHIVE_CHANGE, [(opp, from_archived)], archive_change_payload)


def _notify(state: SandboxState, config, account_id: str, event: str, changes: list, payload) -> list[Delivery]:
    deliveries = []
    with state.lock:
        account = state.account(account_id)
        # Lever help centre: the account's toggle for the event (e.g. "Candidate Stage Change")
        # must be on, or nothing is sent.
        if not account.webhook_toggles.get(event):
            return []
        for opp, before in changes:
            for hook in account.webhooks.values():
                if not matches(hook, event, opp):
                    continue
                delivery = Delivery(
                    id=new_id(), account_id=account_id, webhook_id=hook.id, url=hook.url,
                    event=event, payload=payload(hook.signature_token, opp, before))
                state.deliveries.append(delivery)
                deliveries.append(delivery)
        generation = state.generation
    delays = [float(d) for d in config["SANDBOX_WEBHOOK_RETRY_DELAYS"]]
    dispatcher = _dispatcher(state)
    for delivery in deliveries:
        if drop_delivery(state, delivery.url):
            with state.lock:
                delivery.dropped = delivery.finished = True
        else:
            dispatcher.schedule(time.monotonic(), delivery, 0, delays, generation)
    return deliveries


class Dispatcher:
    """Sends deliveries when due: one scheduler thread, a bounded pool of sender threads.

    A bulk move of thousands of candidates queues thousands of deliveries without starting
    thousands of threads; retries wait in the queue, not in a sleeping thread.
    """

    def __init__(self, state: SandboxState, workers: int = SENDER_THREADS):
        self.state = state
        self.queue: list = []
        self.seq = itertools.count()
        self.wakeup = threading.Condition()
        self.ready: SimpleQueue = SimpleQueue()
        # Daemon threads, so a stopping sandbox never waits for a slow receiver.
        threading.Thread(target=self._run, name="lever-sandbox-deliveries", daemon=True).start()
        for n in range(workers):
            threading.Thread(target=self._send_forever, name=f"lever-sandbox-send-{n}",
                             daemon=True).start()

    def schedule(self, due: float, delivery: Delivery, attempt: int, delays: list[float],
                 generation: int) -> None:
        with self.wakeup:
            heapq.heappush(self.queue, (due, next(self.seq), delivery, attempt, delays, generation))
            self.wakeup.notify()

    def _run(self) -> None:
        while True:
            with self.wakeup:
                while not self.queue or self.queue[0][0] > time.monotonic():
                    timeout = self.queue[0][0] - time.monotonic() if self.queue else None
                    self.wakeup.wait(timeout)
                _, _, delivery, attempt, delays, generation = heapq.heappop(self.queue)
            # Deliveries queued before a reset belong to a world that no longer exists.
            if self.state.generation == generation:
                self.ready.put((delivery, attempt, delays, generation))

    def _send_forever(self) -> None:
        while True:
            self._attempt(*self.ready.get())

    def _attempt(self, delivery: Delivery, attempt: int, delays: list[float],
                 generation: int) -> None:
        status, error = None, None
        try:
            response = requests.post(delivery.url, data=json.dumps(delivery.payload),
                                     timeout=DELIVERY_TIMEOUT_SECONDS,
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "LeverSandbox-Webhooks/1.0"})
            status = response.status_code
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        last = attempt == len(delays)
        with self.state.lock:
            delivery.attempts.append({"at": now_ms(), "status": status, "error": error})
            if ok or last:
                delivery.delivered, delivery.finished = ok, True
        # Lever docs (/developer/documentation#webhooks): failed deliveries are retried,
        # reportedly 5 times in all with growing intervals (SANDBOX_WEBHOOK_RETRY_DELAYS).
        # A retry resends the same body, token included.
        if not ok and not last:
            self.schedule(time.monotonic() + delays[attempt], delivery, attempt + 1, delays,
                          generation)


_dispatchers_lock = threading.Lock()


def _dispatcher(state: SandboxState) -> Dispatcher:
    with _dispatchers_lock:
        if getattr(state, "dispatcher", None) is None:
            state.dispatcher = Dispatcher(state)
        return state.dispatcher


def delivery_json(delivery: Delivery) -> dict:
    return {"id": delivery.id, "webhook_id": delivery.webhook_id, "account_id": delivery.account_id,
            "url": delivery.url, "event": delivery.event,
            "attempts": [dict(a) for a in delivery.attempts], "delivered": delivery.delivered,
            "dropped": delivery.dropped, "finished": delivery.finished,
            "payload": delivery.payload}


def move_and_notify(state: SandboxState, config, account_id: str, opportunity_ids: list[str],
                    stage_id: str, user_id: str | None) -> int:
    """Move opportunities and fire stage-change webhooks in the background; returns moves made."""
    changes = state.move(account_id, opportunity_ids, stage_id, user_id)
    notify_stage_changes(state, config, account_id, changes)
    return len(changes)
