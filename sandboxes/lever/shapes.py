"""Turns sandbox records into the JSON shapes of Lever's REST API v1, and pages lists."""
from __future__ import annotations

import json
from urllib.parse import quote, unquote

from .state import (
    Account,
    Application,
    Note,
    Opportunity,
    Posting,
    Stage,
    StoredFile,
    User,
    Webhook,
)


def user_json(user: User) -> dict:
    return {
        "id": user.id, "name": user.name, "username": user.username, "email": user.email,
        "accessRole": user.access_role, "createdAt": user.created_at,
        "deactivatedAt": user.deactivated_at,
    }


def stage_json(stage: Stage) -> dict:
    return {"id": stage.id, "text": stage.text}


def posting_json(posting: Posting, base_url: str, account: Account) -> dict:
    return {
        "id": posting.id, "text": posting.text, "state": posting.state, "user": posting.user,
        "owner": posting.owner, "hiringManager": posting.hiring_manager,
        "confidentiality": posting.confidentiality, "categories": dict(posting.categories),
        "tags": list(posting.tags), "createdAt": posting.created_at,
        "updatedAt": posting.updated_at,
        "urls": {"list": f"{base_url}/accounts/{account.id}",
                 "show": f"{base_url}/accounts/{account.id}/postings/{posting.id}"},
    }


def application_json(app: Application, opp: Opportunity) -> dict:
    return {
        "id": app.id, "type": "posting", "opportunityId": opp.id, "candidateId": opp.id,
        "posting": app.posting_id, "postingOwner": app.posting_owner,
        "postingHiringManager": app.posting_hiring_manager, "user": app.user,
        "name": opp.name, "email": opp.emails[0] if opp.emails else None,
        "createdAt": app.created_at, "archived": app.archived,
    }


def opportunity_json(opp: Opportunity, base_url: str, expand: set[str]) -> dict:
    # Lever docs (/developer/documentation#expanding-fields): without expand=applications the
    # field holds application ids only.
    if opp.application is None:
        applications = []
    elif "applications" in expand:
        applications = [application_json(opp.application, opp)]
    else:
        applications = [opp.application.id]
    return {
        "id": opp.id, "name": opp.name, "contact": opp.contact, "headline": opp.headline,
        "stage": opp.stage, "confidentiality": "non-confidential", "location": opp.location,
        "phones": list(opp.phones), "emails": list(opp.emails), "links": [],
        "archived": opp.archived, "tags": list(opp.tags), "sources": list(opp.sources),
        "stageChanges": [dict(c) for c in opp.stage_changes], "origin": opp.origin,
        "owner": opp.owner, "followers": list(opp.followers), "applications": applications,
        "createdAt": opp.created_at, "updatedAt": opp.updated_at,
        "lastInteractionAt": opp.updated_at, "lastAdvancedAt": opp.last_advanced_at,
        "urls": {"list": f"{base_url}/candidates", "show": f"{base_url}/candidates/{opp.id}"},
        "isAnonymized": False,
    }


def note_json(note: Note) -> dict:
    # Lever's note object keeps the text in fields[]; notes cannot be edited, so completedAt
    # equals createdAt.
    return {
        "id": note.id, "text": None,
        "fields": [{"type": "text", "text": "Comment", "value": note.value}],
        "user": note.user_id, "secret": note.secret, "score": note.score,
        "createdAt": note.created_at, "completedAt": note.created_at, "deletedAt": None,
    }


def webhook_json(hook: Webhook, with_token: bool) -> dict:
    configuration: dict = {}
    if hook.conditions is not None:
        configuration["conditions"] = hook.conditions
    # Lever docs (/developer/documentation#webhooks): the signature token is returned when the
    # webhook is created; the sandbox's admin API may also show it.
    if with_token:
        configuration["signatureToken"] = hook.signature_token
    return {"id": hook.id, "event": hook.event, "url": hook.url, "createdAt": hook.created_at,
            "configuration": configuration}


def file_json(f: StoredFile, base_url: str) -> dict:
    return {"id": f.id, "downloadUrl": f"{base_url}/files/{f.id}", "ext": f.ext, "name": f.name,
            "uploadedAt": f.uploaded_at, "status": "processed", "size": f.size}


class BadPage(ValueError):
    """limit or offset outside what Lever accepts."""


def paginate(items: list, key, render, limit_arg: str | None, offset_arg: str | None) -> dict:
    """Page records already in order by `key` (a tuple per item), rendered by `render`.

    Lever docs (/developer/documentation#pagination): `limit` 1-100, `next` is an opaque
    cursor passed back as `offset`; `hasNext` tells whether there is more. The cursor is the
    last item's key, so items created between two pages do not shift the pages.
    """
    try:
        limit = int(limit_arg) if limit_arg not in (None, "") else 100
    except ValueError:
        raise BadPage("limit must be an integer") from None
    if not 1 <= limit <= 100:
        raise BadPage("limit must be between 1 and 100")
    if offset_arg:
        try:
            after = tuple(json.loads(unquote(offset_arg)))
        except (ValueError, TypeError):
            raise BadPage("Invalid offset") from None
        try:
            items = [item for item in items if key(item) > after]
        except TypeError:
            raise BadPage("Invalid offset") from None
    page, more = items[:limit], len(items) > limit
    body: dict = {"data": [render(item) for item in page], "hasNext": more}
    if more:
        body["next"] = quote(json.dumps(list(key(page[-1])), separators=(",", ":")), safe="")
    return body
