"""The FastAPI application: routes, bearer-token auth, and every error in OpenAI's shape."""

import asyncio
import hmac
import time
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from loupe.serve import analyze, chat, streaming
from loupe.serve import schemas as s
from loupe.serve.config import ServeConfig
from loupe.serve.errors import ApiError, bad_request
from loupe.serve.images import read_image
from loupe.serve.worker import LaneFull, Workers
from starlette.exceptions import HTTPException as StarletteHTTPException

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorBody, "description": why}
    for code, why in (
        (400, "bad request"),
        (401, "missing or wrong API token"),
        (404, "no such model"),
        (429, "too many requests already waiting for the model"),
        (500, "server error"),
    )
}
STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the chat.completion, or with `stream: true` "
        "Server-Sent Events of chat.completion.chunk objects then [DONE]",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
}


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    err = ApiError(status, message, type_=_TYPES.get(status, "invalid_request_error"), param=param, code=code)
    return JSONResponse(err.body(), status_code=status)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query")]
    where = ".".join(loc) or None
    return f"{where or 'request'}: {first.get('msg', 'invalid request')}", where


def _hostname(host: str) -> str:
    """The name in a Host header, without its port: "[::1]:8765" -> "::1", "127.0.0.1:80" -> "127.0.0.1"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def create_app(workers: Workers, config: ServeConfig) -> FastAPI:
    """The API over one loaded engine; `config.token` (when set) is required as a bearer token."""
    app = FastAPI(
        title="Loupe local API",
        version="1",
        description=(
            "Images in, schema-valid JSON out, on this machine. OpenAI-compatible chat completions (response_format "
            "json_schema is enforced token by token) and Loupe's own analyze/results."
        ),
    )
    bearer = HTTPBearer(auto_error=False, description="the server's API token (when it has one)")
    model_id = workers.engine.model

    async def authorise(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if config.token is None:
            return
        given = creds.credentials if creds is not None else ""
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise ApiError(
                401,
                "missing or wrong API token (send Authorization: Bearer <token>)",
                type_="authentication_error",
                code="invalid_api_key",
            )

    hosts = config.hosts()

    @app.middleware("http")
    async def _host_check(request: Request, call_next: Any) -> Any:
        """Without a token, answer only to this machine's names: a web page that had its own name resolved to
        127.0.0.1 (DNS rebinding) sends that name in Host and is refused. With a token, the token is the check."""
        if config.token is None and _hostname(request.headers.get("host", "")) not in hosts:
            return _error(
                403,
                "this server answers only to localhost and its own address (loupe serve --allow-host NAME adds a name)",
                code="host_not_allowed",
            )
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # still logged by uvicorn
        return _error(500, f"internal error: {type(exc).__name__}", code="internal_error")

    @app.exception_handler(LaneFull)
    async def _busy(request: Request, exc: LaneFull) -> JSONResponse:
        return _error(429, f"the model is busy ({exc}); retry later", code="model_busy")

    @app.exception_handler(streaming.ClientLeft)
    async def _gone(request: Request, exc: streaming.ClientLeft) -> JSONResponse:  # nobody reads it: the client left
        return _error(499, f"{exc}: the client disconnected; the generation was canceled", code="client_closed")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return _error(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    async def known_query(request: Request) -> None:
        """A query parameter this endpoint does not take is a mistake (`?limt=5`), said rather than ignored."""
        route = request.scope.get("route")
        known = _query_names(route.dependant) if route is not None else set()
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            takes = f" (it takes: {', '.join(sorted(known))})" if known else " (it takes none)"
            raise bad_request(f"unknown query parameter {unknown[0][:64]!r}{takes}", param=unknown[0][:64])

    # the spec declares bearer auth only when it is required
    guarded = [Depends(authorise), Depends(known_query)] if config.token else [Depends(known_query)]

    @app.get("/v1/models", response_model=s.ModelList, responses=ERRORS, dependencies=guarded)
    async def models() -> s.ModelList:
        """The one model this server has loaded."""
        return s.ModelList(data=[s.ModelCard(id=model_id, created=int(started))])

    @app.get("/v1/models/{model}", response_model=s.ModelCard, responses=ERRORS, dependencies=guarded)
    async def model_card(model: str) -> s.ModelCard:
        """The served model, by its id (404 for any other)."""
        if model != model_id:
            raise ApiError(
                404,
                f"model {model!r} is not served here; this server serves {model_id!r}",
                type_="invalid_request_error",
                param="model",
                code="model_not_found",
            )
        return s.ModelCard(id=model_id, created=int(started))

    @app.post(
        "/v1/chat/completions", response_model=s.ChatCompletion, responses={**ERRORS, **STREAM}, dependencies=guarded
    )
    async def chat_completions(body: s.ChatRequest, request: Request) -> Any:
        """OpenAI-compatible: images as data URLs, response_format json_schema enforced, logprobs per token;
        `tools` answered as one tool call whose arguments are decoded under the function's parameters;
        `stream: true` sends chat.completion.chunk events as tokens are decoded. A client that disconnects
        cancels its generation."""
        t0 = time.perf_counter()
        held: list[int] = []  # decoded pixels this request holds until its generation ends
        try:
            plan = await workers.decode_lane.call(
                chat.plan, body, model_id, config.max_tokens_cap, workers.pixels, held
            )
            job = streaming.start(workers, plan, stream=bool(body.stream))
        except BaseException:
            workers.pixels.give_back(sum(held))
            raise
        job.future.add_done_callback(lambda _: workers.pixels.give_back(sum(held)))
        if body.stream:
            first = await streaming.first_token(request, job)
            return streaming.EventStream(streaming.events(body, job, first, model_id, t0), job)
        gen = await streaming.result(request, job)
        return chat.completion(body, plan, gen, model_id, (time.perf_counter() - t0) * 1000, job.id)

    @app.post("/v1/analyze", response_model=s.StoredResultOut, responses=ERRORS, dependencies=guarded)
    async def analyze_image(body: s.AnalyzeBody, request: Request) -> dict[str, Any]:
        """One image with a task: the Result JSON (status, data, confidence, boxes), stored in the results store.
        A client that disconnects cancels its analysis; the `cancelled` result (status error) is stored."""
        task = await asyncio.to_thread(analyze.task_for, body, config)
        held: list[int] = []  # decoded pixels this request holds until it is answered
        try:
            image = await workers.decode_lane.call(
                read_image, body.image, "image", config=config, budget=workers.pixels, held=held
            )
            return analyze.outcome_dict(await analyze.analyze_and_save(request, workers, task, image))
        finally:
            workers.pixels.give_back(sum(held))

    @app.get("/v1/results", response_model=s.ResultsPage, responses=ERRORS, dependencies=guarded)
    async def results(
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        status: Literal["ok", "refused", "truncated", "invalid", "error"] | None = None,
    ) -> s.ResultsPage:
        """Stored results (from /v1/analyze and `loupe batch` alike), newest first."""
        return await workers.store_lane.call(
            lambda: analyze.page(workers.store(), offset=offset, limit=limit, status=status)
        )

    @app.get("/v1/search", response_model=s.SearchPage, responses=ERRORS, dependencies=guarded)
    async def search(
        like: Annotated[
            int | None, Query(ge=1, description="a result id: results whose image looks most like it")
        ] = None,
        dupes: Annotated[bool, Query(description="groups of near-duplicate images")] = False,
        where: Annotated[
            str | None, Query(max_length=4096, description="POINTER OP VALUE [AND ...], as `loupe search --where`")
        ] = None,
        text: Annotated[str | None, Query(max_length=4096, description="words that must all appear")] = None,
        limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    ) -> s.SearchPage:
        """Find stored results again, as `loupe search` does (the same rows): `like` a result, `dupes`, or
        `where` / `text` (which also narrow `like` and `dupes`)."""
        return await workers.store_lane.call(
            lambda: analyze.search(workers.store(), like=like, dupes=dupes, where=where, text=text, limit=limit)
        )

    started = time.time()
    _document_400_not_422(app)
    return app


def _query_names(dependant: Any) -> set[str]:
    """The query parameters an endpoint declares, its dependencies' included (FastAPI's Dependant tree)."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _document_400_not_422(app: FastAPI) -> None:
    """FastAPI documents 422 for invalid bodies; this API answers 400 (OpenAI's shape), so say that instead."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            for path in spec.get("paths", {}).values():
                for op in path.values():
                    op.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                spec.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
