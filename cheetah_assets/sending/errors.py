"""Why a send stopped. Every error here ends one send; the run's other sends go on.

Each message says what went wrong and what to do. ``permanent`` tells whether re-executing the
run can help: a transient error says "re-execute"; a permanent one says what to fix first.
"""

from __future__ import annotations


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


class NotConfirmed(SendError):
    """Cheetah acknowledged a request, but reading the campaign back does not show its effect."""


class ListSizeMismatch(SendError):
    """The campaign's recipient count is not the number of recipients Cheetah accepted."""

    permanent = True
