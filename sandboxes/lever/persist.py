"""The sandbox's state in a file, so that a restarted demo finds the Lever it left.

A real Lever account outlives the hub's restarts: the apps it authorized, their tokens, their
webhooks, its candidates and notes. The demo (``--state-file``) keeps those in a JSON file of its
data directory, written after every request that changed something and read back at start.
Only the records a restart must not forget are kept: authorization codes, webhook deliveries in
flight, the request log, faults and rate-limit buckets start afresh.

The file is JSON, rebuilt only into the dataclasses of ``state`` listed here (never code).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import tempfile
from pathlib import Path

from . import state as st

#: The records a restart keeps, by the attribute of ``SandboxState`` that holds them.
KEPT = ("accounts", "access_tokens", "refresh_tokens")
#: The dataclasses the file may name, and nothing else.
TYPES = {cls.__name__: cls for cls in (
    st.User, st.Stage, st.Posting, st.Application, st.Opportunity, st.Note, st.StoredFile,
    st.Webhook, st.AuthorizedApp, st.Account, st.AccessToken, st.RefreshToken)}
VERSION = 1


def _encode(value):
    if dataclasses.is_dataclass(value):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **fields}
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    return value


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    if "__dict__" in value:
        return {_decode(k): _decode(v) for k, v in value["__dict__"]}
    cls = TYPES.get(value.get("__type__"))
    if cls is None:
        raise ValueError(f"unknown record type {value.get('__type__')!r} in the state file")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: _decode(v) for k, v in value.items() if k in names})


def dump(state: st.SandboxState) -> str:
    with state.lock:
        return json.dumps({"version": VERSION,
                           **{name: _encode(getattr(state, name)) for name in KEPT}})


def save(state: st.SandboxState, path: Path) -> None:
    """Write the kept records atomically (a crash mid-write leaves the previous file)."""
    # Under the state's lock: two saves never land out of order.
    with state.lock:
        _write(dump(state), path)


def _write(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(state: st.SandboxState, path: Path) -> bool:
    """Replace the state's kept records with the file's; False when there is no file yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: a state file of version {data.get('version')!r}, not {VERSION}")
    with state.lock:
        state.generation += 1
        state._clear()
        for name in KEPT:
            setattr(state, name, _decode(data[name]))
    return True
