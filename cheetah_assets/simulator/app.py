"""The simulator's ASGI application: the contract's ``/services2`` routes and the ``/_sim`` admin
routes (Starlette), wrapped in :class:`SimulatorApp`, which does what sits in front of every API
call: fault injection, the IP whitelist, Bearer authentication, the per-account rate limit, the
lazy send of due campaigns, and the request log.

Dropping a connection needs the request's socket, which ASGI does not expose: the server
(:mod:`.server`) runs uvicorn with a protocol class that registers each connection's transport
under the client address, and passes a ``transport_of(scope)`` look-up in here. Aborting that
transport before any reply makes the client see the connection close with no response
(``requests`` raises ``ConnectionError``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import tempfile
import urllib.parse
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..cheetah.contract import (
    CAMPAIGN_PATH,
    DATA_MAP_PATH,
    DEFAULT_PAGE_SIZE,
    FOLDER_OBJECTS_PATH,
    FOLDER_PATH,
    IMPORT_PATH,
    REPORT_PATH,
    TOKEN_PATH,
)
from .errors import SimError
from .state import SimState
from .variants import read_campaign_request, read_id, read_import_request, vary_reply, vary_token_reply

API_PREFIX = "/services2"
#: The scope key under which the authenticated account travels to the route handlers.
ACCOUNT_KEY = "cheetah_sim.account"
#: The scope key set by an ``unapplied`` fault: reply as if done, apply nothing.
UNAPPLIED_KEY = "cheetah_sim.unapplied"

TransportLookup = Callable[[dict], Any]
_MISSING = object()


# --- request helpers ---------------------------------------------------------------------------------
def _int_param(request: Request, name: str, default: Any = _MISSING) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is _MISSING:
            raise SimError(400, f"The '{name}' query parameter is required.")
        return default
    try:
        return int(raw)
    except ValueError:
        raise SimError(400, f"The '{name}' query parameter must be an integer, got {raw!r}.") from None


async def _json_body(request: Request, *, optional: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise SimError(400, "The request body must be a JSON object.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SimError(400, "The request body is not valid JSON.") from None


def _account(request: Request):
    return request.scope[ACCOUNT_KEY]


def _error_response(err: SimError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, pw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SimError(400, "The HTTP Basic Authorization header is malformed.", error="invalid_request") from None
    return urllib.parse.unquote(user), urllib.parse.unquote(pw)


# --- the Starlette app -----------------------------------------------------------------------------
def _routes(state: SimState) -> list[Route]:
    def out(reply: Any) -> JSONResponse:
        """A contract route's reply, as the string-id variant serves it when that is on."""
        return JSONResponse(vary_reply(reply) if state.string_ids else reply)

    # ---------------------------------------------------------------- /services2 (the contract)
    async def token(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise SimError(400, "The token request must be form-urlencoded.", error="invalid_request")
        body = (await request.body()).decode("utf-8", errors="replace")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        reply, account = state.access.issue_token(form, _basic_credentials(request.headers.get("authorization")))
        request.scope[ACCOUNT_KEY] = account
        reply = vary_token_reply(reply) if state.string_ids else reply
        return JSONResponse(reply, headers={"Cache-Control": "no-store"})

    async def data_map(request: Request) -> JSONResponse:
        return out(state.directory.data_map_reply(_int_param(request, "id")))

    async def folder(request: Request) -> JSONResponse:
        return out(state.directory.folder_reply(_int_param(request, "id")))

    async def folder_objects(request: Request) -> JSONResponse:
        return out(state.directory.folder_objects(
            _int_param(request, "id"),
            _int_param(request, "pageNumber", 1), _int_param(request, "pageSize", DEFAULT_PAGE_SIZE)))

    async def import_(request: Request) -> JSONResponse:
        account = _account(request)
        if request.method == "GET":
            raw = request.query_params.get("id")
            if state.string_ids and raw:
                return out(state.imports.status(account, read_id(raw, "importId")))
            return out(state.imports.status(account, _int_param(request, "id")))
        # Streamed to a file and read from there: an import body is never whole in memory.
        with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spooled:
            async for chunk in request.stream():
                spooled.write(chunk)
            adapt = read_import_request if state.string_ids else None
            return out(await run_in_threadpool(state.imports.create_streamed, account, spooled, adapt))

    async def campaign(request: Request) -> JSONResponse:
        account = _account(request)
        if request.method == "POST":
            body = await _json_body(request)
            return out(state.campaigns.create(account, read_campaign_request(body) if state.string_ids else body))
        if request.method == "GET":
            name = request.query_params.get("name")
            if request.query_params.get("id") is None and name is not None:
                return out(state.campaigns.by_name(account, name, _int_param(request, "folderId", None)))
            if request.query_params.get("id") is None:
                raise SimError(400, "The 'id' or 'name' query parameter is required.")
            return out(state.campaigns.get(account, _int_param(request, "id")))
        camp_id = _int_param(request, "id")
        if request.method == "PUT":
            apply = not request.scope.get(UNAPPLIED_KEY)
            return out(state.campaigns.act(account, camp_id, await _json_body(request), apply=apply))
        return out(state.campaigns.delete(account, camp_id))

    async def report(request: Request) -> JSONResponse:
        return out(state.reports.report(_account(request), _int_param(request, "id")))

    # ----------------------------------------------------------------------- /_sim (admin)
    async def reset(request: Request) -> JSONResponse:
        return JSONResponse(state.reset_from(await _json_body(request, optional=True)))

    async def accounts(request: Request) -> JSONResponse:
        return JSONResponse(state.directory.add_account(await _json_body(request, optional=True)))

    async def templates(request: Request) -> JSONResponse:
        return JSONResponse(state.directory.add_templates(await _json_body(request)))

    async def whitelist(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(state.access.whitelist())
        return JSONResponse(state.access.set_whitelist(await _json_body(request)))

    async def expire(request: Request) -> JSONResponse:
        return JSONResponse(state.access.expire_tokens())

    async def clock(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(state.clock_reply())
        return JSONResponse(state.set_clock(await _json_body(request)))

    async def faults(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(state.faults.listing())
        if request.method == "DELETE":
            return JSONResponse(state.faults.clear())
        return JSONResponse(state.faults.add(await _json_body(request)))

    async def sent(request: Request) -> JSONResponse:
        with_rows = request.query_params.get("recipients", "true").lower() not in ("0", "false", "no")
        return JSONResponse(state.reports.sent(with_recipients=with_rows))

    async def lists(request: Request) -> JSONResponse:
        with_rows = request.query_params.get("rows", "true").lower() not in ("0", "false", "no")
        return JSONResponse(state.imports.lists_reply(_int_param(request, "id", None), rows=with_rows))

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(state.log.stats())

    async def requests_(request: Request) -> JSONResponse:
        return JSONResponse(state.log.requests())

    return [
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route(DATA_MAP_PATH, data_map, methods=["GET"]),
        Route(FOLDER_PATH, folder, methods=["GET"]),
        Route(FOLDER_OBJECTS_PATH, folder_objects, methods=["GET"]),
        Route(IMPORT_PATH, import_, methods=["GET", "POST"]),
        Route(CAMPAIGN_PATH, campaign, methods=["GET", "POST", "PUT", "DELETE"]),
        Route(REPORT_PATH, report, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/accounts", accounts, methods=["POST"]),
        Route("/_sim/templates", templates, methods=["POST"]),
        Route("/_sim/whitelist", whitelist, methods=["GET", "POST"]),
        Route("/_sim/tokens/expire", expire, methods=["POST"]),
        Route("/_sim/clock", clock, methods=["GET", "POST"]),
        Route("/_sim/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/sent", sent, methods=["GET"]),
        Route("/_sim/lists", lists, methods=["GET"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/requests", requests_, methods=["GET"]),
    ]


async def _sim_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SimError)
    return _error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No such route: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return JSONResponse({"message": message}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"message": f"Internal simulator error: {type(exc).__name__}."}, status_code=500)


# --- the front layer -----------------------------------------------------------------------------------
class SimulatorApp:
    """ASGI app: fault injection, whitelist, auth, rate limit and logging around the routes."""

    def __init__(self, state: SimState, transport_of: TransportLookup | None = None):
        self.state = state
        self.transport_of = transport_of
        self.routes = Starlette(
            routes=_routes(state),
            exception_handlers={SimError: _sim_error, HTTPException: _http_error, Exception: _internal_error},
        )

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        self.state.process_due()  # lazily send whatever became due
        path, method = scope["path"], scope["method"]
        if not path.startswith(API_PREFIX):
            await self.routes(scope, receive, send)
            return

        fault = self.state.faults.take(method, path)
        status: int | None = None
        recorded = False

        def record(dropped: bool) -> None:
            # Logged before the client can see any byte of the reply, so a test that reads the
            # log right after a response always finds the request there.
            nonlocal recorded
            if not recorded:
                recorded = True
                self.state.log.record(method, path, scope.get("query_string", b"").decode("latin-1"),
                                          None if dropped and fault and fault.kind == "drop" else status,
                                          scope.get(ACCOUNT_KEY), fault, dropped)

        try:
            if fault and fault.delay > 0:
                generation = self.state.generation
                await asyncio.sleep(fault.delay)
                if self.state.generation != generation:
                    # The world was reset while this request waited: it belongs to the old one.
                    recorded = True
                    await self._drop(scope)
                    return
            if fault and fault.kind == "status":
                status = fault.status
                record(False)
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                await JSONResponse({"message": f"Injected fault: HTTP {fault.status}."},
                                   status_code=fault.status, headers=headers)(scope, receive, send)
                return
            if fault and fault.kind == "drop":
                record(True)
                await self._drop(scope)
                return
            swallow = bool(fault and fault.kind in ("apply_then_drop", "malformed"))
            if fault and fault.kind == "unapplied":
                scope[UNAPPLIED_KEY] = fault

            async def capture(message: dict) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    if not swallow:
                        record(False)
                if not swallow:
                    await send(message)

            await self._guarded(scope, receive, capture)
            if fault and fault.kind == "malformed":
                # Applied; the real reply is replaced by the fault's raw body.
                status = fault.status
                record(False)
                await Response(fault.body or "", status_code=fault.status,
                               media_type="application/json")(scope, receive, send)
            elif swallow:
                record(True)
                await self._drop(scope)
        finally:
            record(bool(fault and fault.kind in ("drop", "apply_then_drop")))

    async def _guarded(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Whitelist (403), then -- except on the token route -- Bearer auth (401) and the rate
        limit (429), then the route."""
        err = self.state.access.whitelist_error()
        if err is None and scope["path"] != TOKEN_PATH:
            headers = dict(scope.get("headers") or [])
            auth = headers.get(b"authorization", b"").decode("latin-1") or None
            try:
                account = self.state.access.authenticate(auth)
                self.state.access.check_rate(account)
                scope[ACCOUNT_KEY] = account
            except SimError as exc:
                err = exc
        if err is not None:
            await _error_response(err)(scope, receive, send)
            return
        unapplied = scope.get(UNAPPLIED_KEY)
        if unapplied is not None and not (scope["method"] == "PUT" and scope["path"] == CAMPAIGN_PATH):
            # Anything but a campaign action: the fault's body (or {}) as a 200, nothing applied.
            await Response(unapplied.body or "{}", status_code=unapplied.status,
                           media_type="application/json")(scope, receive, send)
            return
        await self.routes(scope, receive, send)

    async def _drop(self, scope: dict) -> None:
        """Close the request's connection with no reply."""
        if self.transport_of is None:
            raise RuntimeError("Dropping a connection needs the SimulatorServer's transport registry.")
        transport = self.transport_of(scope)
        if transport is None:  # the client has gone already: nothing left to drop
            return
        transport.abort()
        # Let the server notice the lost connection before this app returns, so that it does not
        # try to answer (or log) the request it never replied to.
        for _ in range(5):
            await asyncio.sleep(0)


def build_app(state: SimState, transport_of: TransportLookup | None = None) -> SimulatorApp:
    """The simulator's ASGI app over ``state``; ``transport_of(scope)`` enables drop faults."""
    return SimulatorApp(state, transport_of)
