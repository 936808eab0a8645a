"""`dosing serve`: a CDS Hooks 2.0 service (Starlette, run by uvicorn; the `service` extra).

- `GET /cds-services`: discovery, one order-select service per shipped protocol and the
  patient-view worklist (`cds_cards`).
- `POST /cds-services/{id}`: the cards (`cds_advice`).
- `POST /cds-services/{id}/feedback`: accepted or overridden, stored against the decision in
  the patient store (`cds_store`).

Every request is authenticated as CDS Hooks specifies (`cds_auth`): 401 without a trusted,
valid token. Bodies are read up to a limit (413 beyond it); a body that is not JSON, or not a
CDS Hooks request, is a 400 with a message, never a 500. Logs carry the method, the path and
the status, never patient values: an unexpected error is logged by its type alone.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dosing.clinic.store import Store
from dosing.clinic.store_writes import StaleCourse
from dosing.core.strict_json import JsonError, read_json
from dosing.protocol import catalog
from dosing.service.advice import Adviser, Refusal, gather, read_call, read_fetched
from dosing.service.auth import Authenticator, Trust, Unauthorized
from dosing.service.cards import Service, services
from dosing.service.feedback import Feedback, card, record_feedback
from dosing.service.fetch import FetchFailed, fetch
from dosing.service.writer import StoreWriter

log = logging.getLogger("dosing.service")
DEFAULT_MAX_BODY = 1_000_000
"""The largest request body read, in bytes (a full prefetch is tens of kilobytes)."""
_JSON_TYPES = ("application/json", "application/fhir+json")


@attrs.frozen
class ServiceConfig:
    """How `dosing serve` was started."""

    db: Path
    trust: Trust
    base_url: str
    """The URL clients call, without a trailing slash: a token's aud is checked against it."""
    max_body: int = DEFAULT_MAX_BODY
    fetch_timeout: float = 5.0


@attrs.define
class _State:
    config: ServiceConfig
    services: dict[str, Service]
    authenticator: Authenticator
    adviser: Adviser | None = None
    client: httpx.AsyncClient | None = None
    writer: StoreWriter | None = None


Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _guarded(state: _State, handler: Handler) -> Handler:
    """Refusals as their status and message; anything else a 500 logged by its type only
    (an exception's text could hold patient values)."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except Unauthorized as refused:
            log.info("401 %s %s", request.method, request.url.path)
            return _error(401, str(refused))
        except Refusal as refused:
            log.info("%d %s %s", refused.status, request.method, request.url.path)
            return _error(refused.status, refused.message)
        except Exception as error:
            log.error("500 %s %s: internal error (%s)", request.method, request.url.path,
                      type(error).__name__)  # fmt: skip
            return _error(500, f"internal error ({type(error).__name__}); no advice was given")

    return guarded


def _authenticate(state: _State, request: Request, *paths: str) -> None:
    base = state.config.base_url
    audiences = [f"{base}{path}" for path in (request.url.path, *paths)]
    state.authenticator.check(request.headers.get("authorization"), audiences)


async def _json_body(state: _State, request: Request) -> Any:
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind.lower() not in _JSON_TYPES:
        raise Refusal(415, f"the request body is {kind}; expected application/json")
    limit = state.config.max_body
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise Refusal(413, f"the request body is over {limit} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise Refusal(413, f"the request body is over {limit} bytes")
    try:
        return read_json(bytes(data), "the request body")
    except JsonError as error:
        raise Refusal(400, str(error)) from None


def _service(state: _State, request: Request) -> Service:
    found = state.services.get(request.path_params["service"])
    if found is None:
        raise Refusal(404, f"no service {request.path_params['service']}; see /cds-services")
    return found


def create_app(config: ServiceConfig) -> Starlette:
    """The ASGI application: the store opened at start-up, closed at shutdown."""
    protocols = [catalog.load(protocol_id) for protocol_id in catalog.shipped_ids()]
    offered = services(protocols)
    state = _State(config, {s.id: s for s in offered}, Authenticator(config.trust))

    listed = JSONResponse({"services": [service.discovery() for service in offered]}).body

    async def discovery(request: Request) -> Response:
        _authenticate(state, request)
        return Response(listed, media_type="application/json")

    async def call(request: Request) -> Response:
        _authenticate(state, request)
        service = _service(state, request)
        hook_call = read_call(await _json_body(state, request), service)
        assert state.adviser is not None
        assert state.client is not None
        protocol = state.adviser.protocol_of(hook_call, service)
        if isinstance(protocol, dict):
            return JSONResponse(protocol)
        gathered = gather(hook_call, service, protocol)
        labs = gathered.labs
        if gathered.missing:
            if hook_call.fhir_server is None:
                raise Refusal(
                    412,
                    f"not prefetched and no fhirServer to fetch them from: "
                    f"{', '.join(gathered.missing)}",
                )
            try:
                answers = await fetch(
                    state.client, hook_call.fhir_server, hook_call.fhir_token, gathered.missing
                )
            except FetchFailed as failed:
                raise Refusal(412, str(failed)) from None
            labs.extend(read_fetched(answers))
        response, kept = state.adviser.decide(hook_call, service, protocol, labs)
        if kept is not None:
            assert state.writer is not None
            await state.writer.save_card(
                kept.card_uuid, kept.service, kept.hook_instance, kept.pending
            )
        return JSONResponse(response)

    async def feedback(request: Request) -> Response:
        _authenticate(state, request, request.url.path.removesuffix("/feedback"))
        service = _service(state, request)
        items = _feedback(await _json_body(state, request))
        assert state.adviser is not None
        store = state.adviser.store
        for item in items:
            found = card(store, item.card)
            if found is None or found.service != service.id:
                raise Refusal(404, f"card {item.card} was not returned by {service.id}")
        stale = []
        assert state.writer is not None
        for item in items:

            def write(writer_store: Store, item: Feedback = item) -> None:
                found = card(writer_store, item.card)
                assert found is not None
                record_feedback(writer_store, found, item)

            try:
                await state.writer.call(write)
            except StaleCourse:
                stale.append(item.card)
        if stale:
            raise Refusal(
                409,
                f"feedback kept, but the visit of card {', '.join(stale)} was not stored: the "
                "patient's course changed after the card was given",
            )
        return JSONResponse({"recorded": len(items)})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gc.freeze()  # the protocols and the stack live as long as the service: not scanned
        with Store(config.db) as store:
            loaded = {protocol.id: protocol for protocol in protocols}
            state.adviser = Adviser(store, loaded)
            timeout = httpx.Timeout(config.fetch_timeout)
            async with (
                StoreWriter(config.db) as writer,
                httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
            ):
                state.writer, state.client = writer, client
                yield

    routes = [
        Route("/cds-services", _guarded(state, discovery), methods=["GET"]),
        Route("/cds-services/{service}", _guarded(state, call), methods=["POST"]),
        Route("/cds-services/{service}/feedback", _guarded(state, feedback), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _feedback(document: Any) -> list[Feedback]:
    """The feedback entries, or Refusal(400) naming what is wrong."""
    items = document.get("feedback") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise Refusal(400, 'the request body: expected {"feedback": [...]} with entries')
    found = []
    for index, item in enumerate(items):
        where = f"feedback[{index}]"
        if not isinstance(item, dict):
            raise Refusal(400, f"{where}: expected an object")
        card_uuid, outcome, when = (
            item.get("card"),
            item.get("outcome"),
            item.get("outcomeTimestamp"),
        )
        if not isinstance(card_uuid, str) or not card_uuid:
            raise Refusal(400, f"{where}.card: expected the card's uuid")
        if outcome not in ("accepted", "overridden"):
            raise Refusal(400, f"{where}.outcome: expected accepted or overridden")
        if not isinstance(when, str) or not when:
            raise Refusal(400, f"{where}.outcomeTimestamp: expected an ISO timestamp")
        found.append(Feedback(card_uuid, outcome, when, _reason(item.get("overrideReason"), where)))
    return found


def _reason(override: Any, where: str) -> str | None:
    """The override reason in words: the coding's display (and code), and the comment."""
    if override is None:
        return None
    if not isinstance(override, dict):
        raise Refusal(400, f"{where}.overrideReason: expected an object")
    parts = []
    coding = override.get("reason")
    if isinstance(coding, dict):
        code = "#".join(str(coding[k]) for k in ("system", "code") if coding.get(k))
        display = coding.get("display")
        parts.append(f"{display} ({code})" if display and code else str(display or code))
    comment = override.get("userComment")
    if isinstance(comment, str) and comment.strip():
        parts.append(f"comment: {comment.strip()}")
    return "; ".join(part for part in parts if part) or None


def run(config: ServiceConfig, host: str, port: int, access_log: bool = True) -> None:
    """Serve until interrupted."""
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    logging_config = copy.deepcopy(LOGGING_CONFIG)
    logging_config["loggers"][log.name] = {"handlers": ["default"], "level": "INFO"}
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_config=logging_config,
        access_log=access_log,
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=256,
        log_level="info",
    )
