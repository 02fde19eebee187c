"""Why a send stopped. Every error here ends one send; the run's other sends go on.

Each message says what went wrong and what to do. ``permanent`` tells whether re-executing the
run can help: a transient error says "re-execute"; a permanent one says what to fix first.
"""

from __future__ import annotations

from ..cheetah.errors import BadRequest, CheetahError, ImportFailed, UnknownList, UnknownTemplate


class SendError(RuntimeError):
    """A send could not be completed; the message says why and what the operator can do."""

    #: True when re-executing alone cannot fix it (the message says what to fix first).
    permanent: bool = False


class ClaimedElsewhere(SendError):
    """Another live run holds the send's claim; this run left it alone."""


class LostClaim(SendError):
    """Another run took over a send this run was working on; this run stopped touching it."""


class ForeignCampaign(SendError):
    """A campaign with our name exists in Cheetah Messaging, but we cannot prove we created it."""

    permanent = True


class HandedOverElsewhere(SendError):
    """The send was handed over in another Cheetah account, where its campaign may go out: it is
    not sent in this one until the operator releases it (``elsewhere.py``)."""

    permanent = True


class NotConfirmed(SendError):
    """Cheetah acknowledged a request, but reading the campaign back does not show its effect."""


class ListSizeMismatch(SendError):
    """The campaign's recipient count is not the number of recipients Cheetah accepted."""

    permanent = True


#: What to do after a Cheetah error that repeating the step cannot fix by itself.
_ADVICE: tuple[tuple[type[CheetahError], str], ...] = (
    (UnknownTemplate, "Re-executing alone will not help: restore the template in the Optimove folder of Cheetah "
     "Messaging, or give the campaign another template and re-materialize the day, then re-execute."),
    (UnknownList, "Re-executing alone will not help: the list the campaign needs is gone from Cheetah Messaging; "
     "check it there, then re-execute."),
    (BadRequest, "Re-executing alone will not help: fix what Cheetah names, then re-execute."),
)


def stopped(key: str, state: str, exc: CheetahError) -> SendError:
    """The error that ends a send after a Cheetah error the protocol does not repeat."""
    for kind, advice in _ADVICE:
        if isinstance(exc, kind):
            error = SendError(f"Send {key} stopped at {state}: {exc} {advice}")
            error.permanent = True
            return error
    if isinstance(exc, ImportFailed):  # Cheetah's own trouble goes away; a file it cannot take does not
        return SendError(
            f"Send {key} stopped at {state}: {exc} Nothing was sent; re-execute the run to import the list again. "
            "If it fails the same way again, re-executing will not help: fix what Cheetah's reason names (the "
            "list's data, or the Data Map), then re-execute."
        )
    return SendError(f"Send {key} stopped at {state}: {exc} Nothing was sent twice; re-execute the run to resume.")


class CancelError(SendError):
    """The campaign cannot be cancelled (already sent, in another account, or unknown)."""
