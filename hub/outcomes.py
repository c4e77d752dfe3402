"""Outcomes: what a job or a handler did, as a type. Words are made from them only for people.

A job returns an :class:`Outcome`. Code branches on its class and its ``status``; the activity
log and the durable-work row keep ``describe()``, the words; RQ keeps ``public()``, codes and
ids only, because the operators' dashboard prints job results unescaped.

Plugins define their own outcomes as small frozen dataclasses::

    @dataclass(frozen=True)
    class Invited(Outcome):
        code = "invited"
        test_title: str

        def describe(self) -> str:
            return f"invited to “{self.test_title}”"
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

#: Final statuses of durable work, and what an outcome says the row becomes.
DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class Outcome:
    """Something was done (``status`` done) or deliberately not done (``status`` skipped)."""

    #: A short, stable code for machines (filters, counts, RQ's result).
    code: ClassVar[str] = "done"
    #: The final status of the work that ended with this outcome.
    status: ClassVar[str] = DONE

    def describe(self) -> str:
        """The outcome in words, for the activity log and the admin's pages."""
        return self.code.replace("_", " ")

    def public(self) -> dict:
        """Codes and numbers only: what may be stored where an organization's text must not go."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"outcome": self.code, "status": self.status,
                **{k: v for k, v in values.items() if isinstance(v, (bool, int, float))}}

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class Done(Outcome):
    """Work done, with nothing more to say than its code."""

    what: str = "done"

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class Skipped(Outcome):
    """Deliberately not done, and not to be retried: e.g. an event nobody acts on.

    ``reason`` is a code (``not_in_stage``), ``message`` the words an admin reads.
    """

    code: ClassVar[str] = "skipped"
    status: ClassVar[str] = SKIPPED
    reason: str = "skipped"
    message: str = ""

    def describe(self) -> str:
        return self.message or self.reason.replace("_", " ")

    def public(self) -> dict:
        return {"outcome": self.code, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class AlreadyDone(Outcome):
    """Someone did this work before (a duplicate job, a retry after success)."""

    code: ClassVar[str] = "already_done"
    status: ClassVar[str] = DONE


@dataclass(frozen=True)
class InFlight(Outcome):
    """Another run holds this work's lease; it finishes it (or its lease runs out and the
    sweeper sends it again)."""

    code: ClassVar[str] = "in_flight"


@dataclass(frozen=True)
class Paused(Outcome):
    """The work waits for its connection to be usable again (resumed on reconnect)."""

    code: ClassVar[str] = "paused"
    status: ClassVar[str] = "paused"
    reason: str = ""

    def describe(self) -> str:
        return f"waiting for the connection: {self.reason}" if self.reason else "waiting for the connection"


@dataclass(frozen=True)
class Failed(Outcome):
    """Failed for good: retrying cannot help (e.g. the provider refused the request as invalid)."""

    code: ClassVar[str] = "failed"
    status: ClassVar[str] = FAILED
    reason: str = ""

    def describe(self) -> str:
        return self.reason or "failed"


@dataclass(frozen=True)
class Several(Outcome):
    """The outcomes of one piece of work that acted on several things (e.g. several linked tests).

    Skipped when every part was skipped, else done.
    """

    parts: tuple[Outcome, ...] = ()

    @property
    def status(self) -> str:  # type: ignore[override]
        return SKIPPED if self.parts and all(p.status == SKIPPED for p in self.parts) else DONE

    @property
    def code(self) -> str:  # type: ignore[override]
        codes = sorted({p.code for p in self.parts})
        return codes[0] if len(codes) == 1 else "several"

    def describe(self) -> str:
        return "; ".join(p.describe() for p in self.parts) or "nothing to do"

    def public(self) -> dict:
        return {"outcome": self.code, "status": self.status,
                "parts": [p.public() for p in self.parts]}

    def count(self, cls: type[Outcome]) -> int:
        return sum(isinstance(p, cls) for p in self.parts)
