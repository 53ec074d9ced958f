"""The OpenAI-compatible HTTP API over one agent (`spec/serve.md`).

    POST /v1/chat/completions   the messages' text (and an input_audio part, for agents that start from audio)
                                become the request's payload; the agent's outputs become the assistant message
    GET  /v1/models[/{id}]      the served agent (model id = the agent's name)
    GET  /health                200 while the engine serves, 503 once it has stopped
    GET  /metrics               Prometheus text format

Every error body has OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so OpenAI clients raise
their usual exceptions: 400 malformed request, 401 missing or wrong API key, 404 unknown model or path,
429 the in-flight limit, 503 a deadline the engine predicts it would miss (both with Retry-After), 500 a request
the agent failed (an op that raised, a worker lost too often).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import time
import uuid
import wave
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from hetagent.runtime.engine import RequestRecord
from hetagent.runtime.program import Program, answer_decode
from hetagent.backend.chat_template import Chat
from hetagent.backend.text import IncrementalDetokenizer, Sampling
from hetagent.backend.tokenizer import ByteTokenizer, tokenizer_for
from hetagent.backend.transforms import render
from hetagent.errors import HetagentError
from hetagent.serve.metrics import CONTENT_TYPE
from hetagent.serve.service import AgentService, Refusal

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               429: "rate_limit_exceeded", 500: "server_error", 503: "overloaded_error"}
OUTPUT_SAMPLE_RATE = 16000  # runtime audio values are 16 kHz (spec/runtime.md)


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}


# ---------------------------------------------------------------------------------------------- the request

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputAudio(_Strict):
    data: str  # base64
    format: Literal["wav"]


class ContentPart(_Strict):
    type: Literal["text", "input_audio"]
    text: str | None = None
    input_audio: InputAudio | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...: carried by clients, not needed here

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None  # the request's sampling seed (it matters at temperature > 0)
    n: Literal[1] = 1
    user: str | None = None
    metadata: dict | None = None
    store: bool | None = None
    # Sampling, per request (spec/serve.md): unset values fall back to the model's generation config and the
    # server's --temperature; max_tokens is capped by the IR's output_tokens of the answer's LLM call.
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)  # 0: no top-k cut
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    # Not built: only their neutral values are accepted (anything else is a 400 naming the field)
    logprobs: Literal[False] | None = None
    presence_penalty: Literal[0] | None = None
    frequency_penalty: Literal[0] | None = None

    def sampling(self) -> Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if len(stop) > 4 or not all(stop):
            raise ApiError(400, "stop: up to 4 non-empty strings", "stop", "invalid_value")
        limits = [v for v in (self.max_tokens, self.max_completion_tokens) if v is not None]
        return Sampling(self.temperature, self.top_p, self.top_k or None, min(limits) if limits else None, stop)


def _validation_error(exc: ValidationError) -> ApiError:
    # the deepest error is the most specific one: where a field is a union (content: text or parts), pydantic
    # reports every member, and a list of parts that fails should not read as "input should be a string"
    error = max(exc.errors(), key=lambda e: len(e["loc"]))
    # its location without the union members' tags ("str", "list[ContentPart]"): the request's own path
    param = ".".join(str(p) for p in error["loc"] if isinstance(p, int) or ("[" not in p and p != "str")) or None
    if error["type"] == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param, "unknown_parameter")
    return ApiError(400, f"{param or 'body'}: {error['msg']}", param, "invalid_value")


def _query(messages: list[Message]) -> Chat:
    """The conversation as the agent's query: read as text, one message is itself and several are each message's
    text after its role; an LLM call with a chat template renders the messages themselves."""
    return Chat([{"role": m.role, "content": m.text()} for m in messages])


def _audio(messages: list[Message], sample_rate: int) -> np.ndarray:
    """The last input_audio part (16-bit PCM WAV at the agent's rate) as float32 samples."""
    parts = [(i, p) for i, m in enumerate(messages) if isinstance(m.content, list) for p in m.content
             if p.type == "input_audio" and p.input_audio is not None]
    if not parts:
        raise ApiError(400, f"this agent starts from audio (input.audio, {sample_rate} Hz): send an input_audio "
                       "content part (base64 WAV)", "messages", "missing_audio")
    index, part = parts[-1]
    param = f"messages.{index}.content"
    try:
        with wave.open(io.BytesIO(base64.b64decode(part.input_audio.data, validate=True))) as wav:
            rate, width, channels, frames = (wav.getframerate(), wav.getsampwidth(), wav.getnchannels(),
                                             wav.readframes(wav.getnframes()))
    except (ValueError, EOFError, wave.Error) as exc:
        raise ApiError(400, f"input_audio is not a base64 WAV file ({exc})", param, "invalid_audio") from None
    if width != 2 or rate != sample_rate:
        raise ApiError(400, f"input_audio is {8 * width}-bit at {rate} Hz: this agent takes 16-bit PCM at "
                       f"{sample_rate} Hz (resample it first)", param, "invalid_audio")
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).mean(axis=1)
    return (samples / 32768.0).astype(np.float32)


def _wav(samples: np.ndarray) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(OUTPUT_SAMPLE_RATE)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return base64.b64encode(buffer.getvalue()).decode()


# ---------------------------------------------------------------------------------------------- the response

def _message(record: RequestRecord) -> dict:
    """The agent's outputs as the assistant's message: text, JSON and documents as content, audio as `audio`."""
    texts = [render(v) for v in record.outputs if not isinstance(v, np.ndarray)]
    audio = [v for v in record.outputs if isinstance(v, np.ndarray)]
    message = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if audio:
        message["audio"] = {"id": f"audio_{uuid.uuid4().hex}", "data": _wav(np.concatenate(audio)),
                            "expires_at": int(time.time()) + 3600, "transcript": message["content"] or ""}
    return message


def _usage(record: RequestRecord) -> dict:
    return {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
            "total_tokens": record.prompt_tokens + record.completion_tokens}


def create_app(service: AgentService, program: Program, *, api_key: str | None = None) -> FastAPI:
    agent = program.name
    created = int(time.time())
    audio_in = next((n.attrs for n in program.nodes() if n.op == "input.audio"), None)
    answer = answer_decode(program)  # its tokens stream: they are detokenised as its model's tokenizer says
    answer_tokenizer = tokenizer_for(answer.attrs["model"]) if answer is not None else ByteTokenizer()
    query = next((n for n in program.nodes() if n.op == "input.query"), None)
    templated = [n for n in program.nodes() if n.op == "llm.prefill" and query is not None and n.operands == query.results
                 and tokenizer_for(n.attrs["model"]).template is not None]  # the LLM calls the messages feed alone
    app = FastAPI(title=f"hetagent serve: {agent}", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        if exc.status < 429:  # refused before the engine saw it (rejections and failures the engine counts)
            service.metrics.invalid()
        return JSONResponse(error_body(exc.status, exc.message, exc.param, exc.code), exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # unknown paths, wrong methods
        return JSONResponse(error_body(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}"),
                            exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):  # a bug: still an OpenAI-style body, no details
        return JSONResponse(error_body(500, f"internal error ({type(exc).__name__}); see the server's log"), 500)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken must not tell how much of a guessed key was right
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "missing or incorrect API key: send 'Authorization: Bearer <key>' (the server's "
                           "--api-key / HETAGENT_API_KEY)", code="invalid_api_key")

    def model_card(model: str) -> dict:
        if model != agent:
            raise ApiError(404, f"The model '{model}' does not exist: this server serves '{agent}'", "model",
                           "model_not_found")
        return {"id": agent, "object": "model", "created": created, "owned_by": "hetagent"}

    @app.get("/health")
    async def health():
        if not service.healthy:
            return JSONResponse({"status": "stopped", "reason": service.failure}, 503)
        return {"status": "ok", "agent": agent}

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [model_card(agent)]}

    @app.get("/v1/models/{model}")
    async def model(model: str, request: Request):
        authorize(request)
        return model_card(model)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        try:
            data = json.loads(await request.body())
        except ValueError as exc:  # not JSON, or not UTF-8
            raise ApiError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None
        except RecursionError:
            raise ApiError(400, "the request body is JSON nested too deeply to read", code="invalid_json") from None
        try:
            body = ChatRequest.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        model_card(body.model)
        payload = {"query": _query(body.messages)}
        for prefill in templated:  # a conversation a model's template refuses is the client's error
            try:
                tokenizer_for(prefill.attrs["model"]).prompt_ids([payload["query"]], prefill.attrs.get("system"))
            except HetagentError as exc:
                raise ApiError(400, str(exc), "messages", "invalid_value") from None
        if audio_in is not None:
            payload["audio"] = _audio(body.messages, int(audio_in.get("sample_rate", 16000)))
        ticket = service.submit(payload, body.seed, stream=body.stream, sampling=body.sampling())
        refused: Refusal | None = await ticket.admitted
        if refused is not None:
            raise ApiError(refused.status, refused.reason, code="admission_rejected", headers={"Retry-After": "1"})
        completion_id, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": completion_id, "created": now, "model": agent, "system_fingerprint": None}
        if not body.stream:
            try:
                record = await ticket.finished
            except asyncio.CancelledError:  # the client went away
                service.cancel(ticket)
                raise
            if record.status != "ok":
                raise ApiError(500, f"the agent failed this request: {record.error}", code="agent_error")
            return {**head, "object": "chat.completion", "usage": _usage(record),
                    "choices": [{"index": 0, "message": _message(record), "finish_reason": record.finish_reason,
                                 "logprobs": None}]}
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        detokenizer = IncrementalDetokenizer(answer_tokenizer.decode, body.sampling().stop)
        return StreamingResponse(_stream(head, ticket, include_usage, detokenizer, service.cancel),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return app


def _event(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _stream(head: dict, ticket, include_usage: bool, detokenizer: IncrementalDetokenizer, cancel):
    """`_events`; a client that goes away before the request has ended has it cancelled (`cancel(ticket)`)."""
    try:
        async for event in _events(head, ticket, include_usage, detokenizer):
            yield event
    finally:
        if not ticket.finished.done():
            cancel(ticket)


async def _events(head: dict, ticket, include_usage: bool, detokenizer: IncrementalDetokenizer):
    """Server-sent events in OpenAI's chunk format. The role goes out at once (the request was admitted). Where
    the agent's answer is its final decode's text (`answer_decode`), that text goes out as the decode generates
    its tokens (the engine reports only those), a delta per step; otherwise — a transform (redaction), tool or
    TTS after the model — nothing is sent before the agent has returned, and its output goes out whole. Either
    way what follows the last delta, when the agent returns, completes the same content a non-streamed answer has."""
    chunk = {**head, "object": "chat.completion.chunk"}

    def content(delta: dict) -> str:
        return _event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}]})

    yield _event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None, "logprobs": None}]})
    ended = False
    while not ended:
        reports = [await ticket.tokens.get()]
        while not ticket.tokens.empty():  # a client slower than the decode gets the steps since as one delta
            reports.append(ticket.tokens.get_nowait())
        ended = None in reports  # the last report: the request has ended
        if text := detokenizer.push([t for report in reports if report is not None for t in report]):
            yield content({"content": text})
    record = await ticket.finished
    if record.status != "ok":  # a 200 is already on its way: the error travels as an event, which clients raise
        yield _event(error_body(500, f"the agent failed this request: {record.error}", code="agent_error"))
        return
    delta = {k: v for k, v in _message(record).items() if k != "role"}
    if detokenizer.text and isinstance(delta.get("content"), str):  # streamed: only what is still missing
        delta["content"] = detokenizer.finish(delta["content"])
        if not delta["content"]:
            del delta["content"]
    if delta or not detokenizer.text:
        yield content(delta)
    yield _event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": record.finish_reason,
                                        "logprobs": None}]})
    if include_usage:
        yield _event({**chunk, "choices": [], "usage": _usage(record)})
    yield _event("[DONE]")
