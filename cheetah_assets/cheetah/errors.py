"""Typed errors of the Cheetah Messaging client.

Every error carries one sentence a marketing-operations engineer can act on. None of them ever
holds a secret (consumer secret, consumer key, access token): messages are built from setting
*names* and from the API's own ``message`` field, never from request bodies or headers.
"""

from __future__ import annotations


class CheetahError(Exception):
    """Base class. ``str(err)`` is the one clear sentence."""

    #: HTTP status of the reply that caused it, when there was one.
    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


# --- configuration and access -------------------------------------------------------------------
class ConfigurationError(CheetahError):
    """A setting is missing or malformed (named in the message)."""


class InsecureEndpoint(ConfigurationError):
    """Plain HTTP to anything but loopback, or certificate checks turned off."""


class InvalidCredentials(CheetahError):
    """The token request was refused (400/401 invalid_grant)."""


class IpNotWhitelisted(CheetahError):
    """403: this server's address is not on the account's IP whitelist."""


class Unauthorized(CheetahError):
    """401 on an API call even after renewing the token once."""


# --- lookups -------------------------------------------------------------------------------------
class NotFound(CheetahError):
    status = 404


class UnknownFolder(NotFound):
    pass


class UnknownDataMap(NotFound):
    pass


class UnknownTemplate(NotFound):
    pass


class UnknownList(NotFound):
    pass


class UnknownCampaign(NotFound):
    pass


class UnknownImport(NotFound):
    pass


# --- campaign life cycle -------------------------------------------------------------------------
class BadRequest(CheetahError):
    """400 the client has no more specific type for."""

    status = 400


class NameAlreadyExists(BadRequest):
    """400 'An Obj with this name already exists': the campaign name is taken in the folder."""


class AlreadyLaunched(BadRequest):
    """400 'Campaign has been launched already.'"""


class StartTimeInPast(CheetahError):
    """422: the campaign's start time has already passed."""

    status = 422


class CampaignAlreadySent(CheetahError):
    """409 on DELETE: a sent campaign cannot be cancelled."""

    status = 409


class MetricsNotReady(CheetahError):
    """409 on the report: the campaign has not been sent yet."""

    status = 409


# --- imports -------------------------------------------------------------------------------------
class ImportTooLarge(CheetahError):
    """413: the file has more rows or bytes than one import accepts; split it."""

    status = 413


class ImportFailed(CheetahError):
    """The import ended FAILED, or polling gave up before it finished."""


# --- transport -----------------------------------------------------------------------------------
class RateLimited(CheetahError):
    """429 still returned after the retries allowed by the retry policy."""

    status = 429


class ServerError(CheetahError):
    """5xx still returned after the retries allowed by the retry policy."""


class TransportError(CheetahError):
    """The connection failed or timed out (after retries where the call is safe to repeat).

    For a call that is not safe to repeat, the request may or may not have taken effect.
    """


class Redirected(CheetahError):
    """3xx: the API answered with a redirect, which the client never follows (the credentials,
    the recipients' CSV and our trust in a reply stay with the configured endpoint)."""


class MalformedResponse(CheetahError):
    """The reply was not JSON, or lacked a key, or a value had the wrong type."""


#: The errors that may pass when tried again later (connection trouble, 5xx, 429): the client's
#: own retries did not outlast them, a step's retry may.
TRANSIENT = (TransportError, ServerError, RateLimited)
