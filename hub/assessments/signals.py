"""Signals of the assessment domain; integrations connect receivers to them in ``init_app``."""
from blinker import Namespace

_signals = Namespace()

#: Sent by ``complete_invitation`` once per invitation, after the result is committed.
#: Sender: the Flask app. Keyword arguments: ``result_id`` (str) and ``invitation_id`` (str).
#: Receivers should only enqueue a job (e.g. post the score to the ATS), never do I/O inline.
invitation_completed = _signals.signal("invitation-completed")

#: Sent by ``expire_invitations`` once per invitation it writes down as expired (never started
#: in time, or not submitted within its time limit), in that job's transaction.
#: Sender: the Flask app. Keyword argument: ``invitation_id`` (str). Receivers may add rows to
#: the transaction (durable work such as a tag) but do no I/O.
invitation_expired = _signals.signal("invitation-expired")

#: Sent by ``start_invitation`` once per invitation, when the candidate presses Start, in the
#: transaction that records it. Sender: the Flask app. Keyword argument: ``invitation_id``.
#: Receivers may add rows to the transaction (durable work) but do no I/O.
invitation_started = _signals.signal("invitation-started")

#: Sent by ``regrade_result`` when re-grading changed a result (the test's answer key was
#: corrected after it was taken), in the transaction that stores the new score. Sender: the Flask
#: app. Keyword arguments: ``result_id`` and ``previous`` ({"score", "percentage", "passed"}).
result_regraded = _signals.signal("result-regraded")

#: Sent by ``cancel_invitation`` once per invitation it withdraws (the candidate had not started),
#: in the caller's transaction. Sender: the Flask app. Keyword arguments: ``invitation_id`` and
#: ``reason`` (the caller's words, e.g. "archived in the ATS"). Receivers may add rows to the
#: transaction (durable work) but do no I/O.
invitation_cancelled = _signals.signal("invitation-cancelled")
