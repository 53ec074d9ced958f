"""`hetagent serve`: the OpenAI-compatible API, driven by the official `openai` client against a real server.

Two servers per module (each `hetagent serve` in its own process on 127.0.0.1, port 0): one with an API key
for the API itself, one with a one-request limit and a 1 ms SLA for admission control. The agent is a single
LLM call with the same shapes as test_runtime's, so both share its compiled kernels in the session's cache.
"""

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import EXAMPLES, ROOT

pytest.importorskip("torch")
pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

AGENT = """"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
  %a = "llm.call"(%q) {model = "llama-3-8b", input_tokens = 64 : i64, output_tokens = 24 : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat", sla_ms = 60000.0 : f64} : () -> ()
"""
KEY = "sk-hetagent-test"
START_TIMEOUT_S = 240  # a cold compile cache builds the kernels first


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "chat.mlir"
    path.write_text(AGENT)
    return path


class Server:
    """`hetagent serve` in a child process; its output is drained by a thread so the pipe never fills."""

    def __init__(self, *argv: str):
        self.process = subprocess.Popen([sys.executable, "-m", "hetagent", "--backends", "cpu", "serve", *argv,
                                         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "HETAGENT_API_KEY"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(f"hetagent serve did not start in {START_TIMEOUT_S} s:\n{''.join(self.output)}")
            if line is None:
                pytest.fail(f"hetagent serve exited {self.process.wait()}:\n{''.join(self.output)}")
            if found := re.search(r"serving \S+ on (http://\S+/v1)", line):
                self.url = found[1]
                self.root = self.url.removesuffix("/v1")
                return

    def _drain(self):
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)  # a graceful shutdown: uvicorn, then the engine's workers
        return self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(agent):
    s = Server(str(agent), "--api-key", KEY, "--max-body-bytes", "100000", "--header-timeout", "1.5",
               "--body-timeout", "1.5")
    yield s
    assert s.stop() == 0, "".join(s.output)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)


def _get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


QUESTION = "What is the boiling point of water on Everest?"


def test_models_list_the_served_agent(client):
    assert [m.id for m in client.models.list().data] == ["chat"]
    assert client.models.retrieve("chat").owned_by == "hetagent"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_non_streamed_and_streamed_completions_agree(client):
    completion = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": QUESTION}])
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    usage = completion.usage
    assert usage.prompt_tokens == len(QUESTION.encode()) + 1  # byte tokens and the begin-of-sequence token
    assert 1 <= usage.completion_tokens <= 24 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # the whole budget (output_tokens = 24) is "length"; fewer tokens means the model ended it
    assert choice.finish_reason == ("length" if usage.completion_tokens == 24 else "stop")

    chunks = list(client.chat.completions.create(model="chat", messages=[{"role": "user", "content": QUESTION}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == choice.message.content  # greedy sampling: the same answer either way
    assert len(deltas) > 1  # the answer IS the decode's text: it streams as the tokens come, not in one piece
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].usage.completion_tokens == usage.completion_tokens and not chunks[-1].choices


def test_concurrent_clients_are_all_served(server):
    async def main():
        client = openai.AsyncOpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        prompts = [f"question {i}: what is {i} + {i}?" for i in range(6)]
        answers = await asyncio.gather(*(client.chat.completions.create(
            model="chat", messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": p}])
            for p in prompts))
        await client.close()
        return prompts, answers

    prompts, answers = asyncio.run(main())
    for prompt, answer in zip(prompts, answers):
        # a conversation is rendered "role: text", blank-line separated, into the agent's query
        assert answer.usage.prompt_tokens == len(f"system: Answer briefly.\n\nuser: {prompt}".encode()) + 1


def test_api_key_is_required(server):
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=server.url, api_key="wrong-key", max_retries=0).models.list()
    assert caught.value.body["code"] == "invalid_api_key"
    status, body = _get(server.url + "/models")  # no key at all (the openai client always sends one)
    assert status == 401 and set(json.loads(body)["error"]) == {"message", "type", "param", "code"}
    assert _get(server.root + "/health")[0] == 200  # health and metrics stay open, for probes and scrapers


@pytest.mark.parametrize("request_args, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "extra_body": {"best_of": 3}}, "best_of"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content"),
])
def test_malformed_requests_get_openai_style_400s(client, request_args, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", **request_args)
    error = caught.value.body
    assert error["type"] == "invalid_request_error" and error["param"].startswith(param) and error["message"]


def test_unparseable_body_and_unknown_model(server, client):
    request = urllib.request.Request(server.url + "/chat/completions", data=b"{not json", method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and json.loads(caught.value.read())["error"]["code"] == "invalid_json"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found" and "chat" in missing.value.body["message"]


def test_metrics_expose_latency_histograms_and_queues(server, client):
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    status, text = _get(server.root + "/metrics")
    assert status == 200
    series = [
        'hetagent_request_seconds_bucket{agent="chat",le="+Inf"}',
        'hetagent_op_seconds_bucket{agent="chat",kind="llm.decode",le="+Inf",op="answer.decode"}',
        'hetagent_op_queue_seconds_count{agent="chat",kind="llm.prefill",op="answer.prefill"}',
        'hetagent_request_ttft_seconds_count{agent="chat"}',
        'hetagent_time_between_tokens_seconds_count{agent="chat"}',
        'hetagent_requests_total{agent="chat",status="ok"}',
        'hetagent_requests_total{agent="chat",status="invalid"}',
        'hetagent_sla_attainment_ratio{agent="chat"} 1.0',
        'hetagent_requests_in_flight{agent="chat"}',
        'hetagent_worker_queue_depth{agent="chat",worker="host-cpu:0"}',
        'hetagent_tokens_total{agent="chat",kind="completion"}',
        'hetagent_prefix_cache_lookups_total{agent="chat"}',
        'hetagent_prefix_cache_hits_total{agent="chat"}',
        'hetagent_prefix_cache_hit_ratio{agent="chat"}',
        'hetagent_prefill_tokens_total{agent="chat",kind="computed"}',
        'hetagent_prefill_tokens_total{agent="chat",kind="saved"}',
    ]
    assert [s for s in series if s not in text] == []


def _burst(server: Server, count: int, stream: bool = False) -> list:
    """`count` concurrent requests: the completions (streams read to the end) or the exceptions."""
    async def one(client):
        answer = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                                      stream=stream)
        return [chunk async for chunk in answer] if stream else answer

    async def main():
        client = openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0)
        results = await asyncio.gather(*(one(client) for _ in range(count)), return_exceptions=True)
        await client.close()
        return results

    return asyncio.run(main())


def test_admission_control_answers_429_and_503(agent):
    server = Server(str(agent), "--max-inflight", "2", "--sla-ms", "1")
    try:
        first = _burst(server, 8)  # no running mean yet (until the first ends): the in-flight limit applies
        limited = [r for r in first if isinstance(r, openai.RateLimitError)]
        assert limited and all(r.status_code in (429, 503) for r in first if isinstance(r, Exception))
        assert "--max-inflight 2" in limited[0].body["message"] and limited[0].body["code"] == "admission_rejected"
        assert limited[0].response.headers["retry-after"] == "1"
        # now every request is predicted to miss the 1 ms SLA: rejected before its stream starts, unless the
        # engine is idle (which admits, or the stale mean would reject for ever)
        second = _burst(server, 6, stream=True)
        overloaded = [r for r in second if isinstance(r, openai.APIStatusError) and r.status_code == 503]
        assert overloaded and "of the SLA of 1 ms" in overloaded[0].body["message"]
        assert any(not isinstance(r, Exception) for r in second)
        text = _get(server.root + "/metrics")[1]
        rejected = float(re.search(r'hetagent_requests_total\{agent="chat",status="rejected"\} (\S+)', text)[1])
        assert rejected == sum(isinstance(r, Exception) for r in first + second)
        assert float(re.search(r'hetagent_sla_attainment_ratio\{agent="chat"\} (\S+)', text)[1]) < 1
    finally:
        assert server.stop() == 0


def test_audio_round_trips_through_wav():
    from hetagent.serve.api import Message, _audio, _wav

    samples = (0.5 * np.sin(np.linspace(0, 40, 1600))).astype(np.float32)
    message = Message(role="user", content=[{"type": "input_audio", "input_audio": {"data": _wav(samples),
                                                                                      "format": "wav"}}])
    assert np.allclose(_audio([message], 16000), samples, atol=1e-4)
    with pytest.raises(Exception, match="16-bit PCM at 8000 Hz"):
        _audio([message], 8000)
    with pytest.raises(Exception, match="send an input_audio content part"):
        _audio([Message(role="user", content="no audio here")], 16000)


@pytest.fixture
def taken_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_bad_input_exits_2(cli, agent, taken_port, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    cases = [
        (["serve", "no/such/agent.mlir", "--port", "0"], "no/such/agent.mlir"),
        (["serve", str(agent), "--port", "70000"], "argument --port: 70000 must be <= 65535"),
        (["serve", str(agent), "--port", str(taken_port)], f"cannot listen on 127.0.0.1:{taken_port}"),
        (["serve", str(agent), "--address", "10.0.0.1:6379"], "--address names a Ray cluster"),
        (["serve", str(agent), "--engine", "ray"], "hetagent[ray]"),
        (["serve", str(agent), "--api-key", ""], "--api-key"),
        (["serve", str(agent), "--max-inflight", "0"], "argument --max-inflight: 0 must be >= 1"),
        (["serve", str(agent), "--max-body-bytes", "nan"], "argument --max-body-bytes: 'nan' is not an integer"),
        (["serve", str(EXAMPLES / "rag_qa.mlir")], "memory store 'handbook'"),
    ]
    for argv, message in cases:
        code, _, err = cli(*argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)


def _raw(server: Server, data: bytes, wait_s: float = 10.0) -> bytes:
    """Send raw bytes to the server and read until it closes the connection (or `wait_s` passes)."""
    host, port = server.root.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def _error_of(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def test_a_body_over_the_limit_gets_413(server):
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/json\r\n")
    status, error = _error_of(_raw(server, (head + "Content-Length: 50000000\r\n\r\n").encode()))
    assert status == 413 and "100,000 bytes" in error["message"] and error["code"] == "body_too_large"
    chunked = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"".join(
        b"%x\r\n" % 30000 + b"x" * 30000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
    status, error = _error_of(_raw(server, chunked))
    assert status == 413 and error["type"] == "invalid_request_error"


def test_slow_clients_are_cut_off(server):
    started = time.monotonic()
    assert _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n") == b""  # headers never end
    assert time.monotonic() - started < 8
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Length: 1000\r\n\r\n{\"model\"")
    status, error = _error_of(_raw(server, head.encode()))
    assert status == 408 and error["code"] == "body_timeout"


def test_deeply_nested_json_gets_an_openai_style_400(server):
    body = b'{"model": "chat", "messages": ' + b"[" * 40_000 + b"]" * 40_000 + b"}"
    request = urllib.request.Request(server.url + "/chat/completions", data=body, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    error = json.loads(caught.value.read())["error"]
    assert caught.value.code == 400 and "nested too deeply" in error["message"]


REDACTING = AGENT.replace('"agent.return"(%a)', """%r = "data.transform"(%a) {fn = "pii_redact", name = "redact"}
      : (!agent.text) -> !agent.text
  "agent.return"(%r)""").replace('sym_name = "chat"', 'sym_name = "redacting"')


def test_an_answer_transformed_after_the_model_streams_whole(tmp_path):
    """A transform between the decode and the answer (redaction) must never be bypassed: no token streams, the
    transformed answer goes out as one content chunk when the agent returns."""
    path = tmp_path / "redacting.mlir"
    path.write_text(REDACTING)
    server = Server(str(path))
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        messages = [{"role": "user", "content": QUESTION}]
        answer = client.chat.completions.create(model="redacting", messages=messages).choices[0].message.content
        chunks = list(client.chat.completions.create(model="redacting", messages=messages, stream=True))
        deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert deltas == [answer]
    finally:
        assert server.stop() == 0


def test_a_stream_shows_its_first_tokens_before_the_request_ends(server):
    """Time to the first content delta against the whole stream: the tokens leave as the decode makes them."""
    async def main():
        client = openai.AsyncOpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        start, times = time.monotonic(), []
        stream = await client.chat.completions.create(model="chat", stream=True,
                                                      messages=[{"role": "user", "content": "Tell me a story."}])
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.monotonic() - start)
        await client.close()
        return times, time.monotonic() - start

    times, total = asyncio.run(main())
    assert len(times) > 1 and times[0] < times[-1] <= total


def test_incremental_detokenizer_yields_only_whole_characters():
    from hetagent.backend.text import EOS, IncrementalDetokenizer, decode, encode

    ids = encode("né €😀 ok")[1:] + [EOS]  # 2-, 3- and 4-byte characters, one byte per token
    detokenizer = IncrementalDetokenizer()
    deltas = [detokenizer.push([t]) for t in ids]
    assert all("\ufffd" not in d for d in deltas)  # a character's first bytes are held back, not replaced
    assert [d for d in deltas if d] == ["n", "é", " ", "€", "😀", " ", "o", "k"]
    assert detokenizer.finish(decode(ids)) == "" and "".join(deltas) == "né €😀 ok"
    # invalid bytes decode to U+FFFD for good: held back while last, then let through; `finish` sends the rest
    rng = np.random.default_rng(0)
    for _ in range(200):
        ids = list(3 + rng.integers(0, 256, rng.integers(0, 24)))
        detokenizer, deltas, i = IncrementalDetokenizer(), [], 0
        while i < len(ids):
            size = int(rng.integers(1, 4))  # several ids per report, as a worker sends them
            deltas.append(detokenizer.push(ids[i:i + size]))
            i += size
        assert decode(ids).startswith("".join(deltas))
        assert "".join(deltas) + detokenizer.finish(decode(ids)) == decode(ids)


def test_a_retried_decode_does_not_repeat_streamed_tokens():
    """The engine hands each answer position on once: a decode retried after its worker died reports its tokens
    again from the first (greedy decode reproduces them), and only the new ones reach `on_tokens`."""
    from types import SimpleNamespace

    from hetagent.runtime.engine import LocalEngine

    engine, got = LocalEngine.__new__(LocalEngine), []
    engine.on_tokens = lambda request, tokens: got.extend(tokens)
    live = SimpleNamespace(request=SimpleNamespace(id=5), record=SimpleNamespace(status="running"), streamed=0)
    first = SimpleNamespace(live=live, reported=0)
    worker = SimpleNamespace(tasks={1: first})
    engine._tokens(worker, ((1, (10, 11)),))
    engine._tokens(worker, ((1, (12,)),))
    worker.tasks = {2: SimpleNamespace(live=live, reported=0)}  # the worker died; the retry starts over
    engine._tokens(worker, ((2, (10,)),))
    engine._tokens(worker, ((2, (11, 12, 13)),))
    engine._tokens(worker, ((2, (14,)), (9, (99,))))  # a task the engine no longer knows is ignored
    assert got == [10, 11, 12, 13, 14]


def test_a_stream_survives_its_decode_worker_dying_without_repeating_tokens(agent):
    """In the engine, end to end: the decode worker is killed once tokens of an answer have been handed on; the
    retried decode reports them again, and `on_tokens` still sees each position once — the ids of a run without
    the kill, which detokenise to the answer."""
    from hetagent.compiler.cache import CompileCache
    from hetagent.backend import Registry
    from hetagent.runtime.engine import EngineOptions, LocalEngine, Request
    from hetagent.runtime.run import new_run_id, prepare
    from hetagent.backend.text import IncrementalDetokenizer

    cache = CompileCache()  # the servers' (the kernels are built)
    # prefill and decode on two workers, so that the decode's can die alone
    prepared = prepare(agent, registry=Registry.load(["cpu"]), cpu_partitions=2, cache=cache)
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(cache.root))
    prompts = [QUESTION, "Tell me a story.", "hi"]
    with LocalEngine(prepared.program, prepared.workers, options,
                     kernels_of=prepared.kernels_of) as engine:
        streamed: dict[int, list[int]] = {}
        engine.on_tokens = lambda request, tokens: streamed.setdefault(request, []).extend(tokens)
        killed = []

        def kill_mid_stream():
            decoder = next(w for w in engine.workers if w.plan.name == "host-cpu:1")
            busy = {t.live.request.id for t in decoder.tasks.values() if t.node.op == "llm.decode"}
            if not killed and busy & set(streamed):
                killed.extend(len(streamed[r]) for r in busy & set(streamed))
                engine.kill_worker("host-cpu:1")

        records = engine.run([Request(i, {"query": p}, 0.0, stream=True) for i, p in enumerate(prompts)],
                             on_tick=kill_mid_stream)
        retried = [o for o in engine.ops if o.op == "llm.decode" and o.attempt > 1]
        reference = engine.run([Request(10 + i, {"query": p}, 0.0, stream=True) for i, p in enumerate(prompts)])
    assert killed and max(killed) > 0 and retried, "the decode worker was never killed mid-stream"
    assert [r.status for r in records + reference] == ["ok"] * 6
    for i, (record, clean) in enumerate(zip(records, reference)):
        # both are the answer's ids up to where the last report before the result left off (the final steps' come
        # with the result, as text): the same ids, so nothing was repeated or skipped
        killed_ids, clean_ids = streamed.get(i, []), streamed.get(10 + i, [])
        shorter = min(len(killed_ids), len(clean_ids))
        assert killed_ids[:shorter] == clean_ids[:shorter] and 0 < len(clean_ids) <= clean.completion_tokens
        detokenizer = IncrementalDetokenizer()
        deltas = detokenizer.push(killed_ids)
        assert deltas + detokenizer.finish(record.outputs[0]) == record.outputs[0] == clean.outputs[0]


def test_the_server_reads_only_the_engines_public_face(agent):
    """AgentService drives a real engine through a proxy that records every attribute it touches: all are the
    engine's documented face (`ENGINE_API`), its state comes from `snapshot()` (a read-only copy), and admission's
    typed rejections become 429 / 503 in `refusal` alone. A streamed request cancelled mid-answer ends
    "cancelled"."""
    from dataclasses import FrozenInstanceError

    from hetagent.compiler.cache import CompileCache
    from hetagent.backend import Registry
    from hetagent.runtime.engine import EngineOptions, LocalEngine, Rejection
    from hetagent.runtime.run import new_run_id, prepare
    from hetagent.serve.metrics import ServeMetrics
    from hetagent.serve.service import ENGINE_API, AgentService, refusal

    class Recorder:
        def __init__(self, engine):
            object.__setattr__(self, "engine", engine)
            object.__setattr__(self, "touched", set())

        def __getattr__(self, name):
            self.touched.add(name)
            return getattr(self.engine, name)

        def __setattr__(self, name, value):
            self.touched.add(name)
            setattr(self.engine, name, value)

    cache = CompileCache()
    prepared = prepare(agent, registry=Registry.load(["cpu"]), cache=cache)
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(cache.root), max_inflight=1)
    engine = Recorder(LocalEngine(prepared.program, prepared.workers, options,
                                  kernels_of=prepared.kernels_of))
    service = AgentService(engine, ServeMetrics("chat", None))

    async def main():
        first = service.submit({"query": QUESTION}, 0, stream=True)
        others = [service.submit({"query": "hi"}, 0) for _ in range(2)]
        refused = [await t.admitted for t in others]
        assert await first.admitted is None
        assert await first.tokens.get()  # the answer has begun
        service.cancel(first)
        return refused, await asyncio.wait_for(first.finished, 60)

    try:
        refused, record = asyncio.run(main())
        snapshot = engine.engine.snapshot()
    finally:
        service.close()
    assert [(r.status, "--max-inflight 1" in r.reason) for r in refused] == [(429, True)] * 2
    assert record.status == "cancelled" and "client went away" in record.error
    assert {"submit", "poll", "snapshot", "take_ops", "cancel", "forget"} <= engine.touched <= ENGINE_API
    with pytest.raises(FrozenInstanceError):
        snapshot.inflight = 3
    with pytest.raises(TypeError):
        snapshot.calls["host-cpu:0"] = 0
    assert (snapshot.inflight, snapshot.max_inflight, set(snapshot.calls)) == (0, 1, {"host-cpu:0"})
    assert refusal(Rejection("limit", "x")).status == 429 and refusal(Rejection("sla", "y")).status == 503


LONG_AGENT = AGENT.replace("output_tokens = 24", "output_tokens = 200")


def test_a_cancelled_request_has_its_workers_drop_its_calls(tmp_path):
    """`cancel` mid-decode: the decode worker lets the sequence go (answers it "cancelled") instead of generating
    the rest of its 200 tokens, and its slot serves the next request."""
    from hetagent.compiler.cache import CompileCache
    from hetagent.backend import Registry
    from hetagent.runtime.engine import EngineOptions, LocalEngine, Request
    from hetagent.runtime.run import new_run_id, prepare

    agent = tmp_path / "long.mlir"
    agent.write_text(LONG_AGENT)
    cache = CompileCache()
    prepared = prepare(agent, registry=Registry.load(["cpu"]), cache=cache)
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(cache.root))
    with LocalEngine(prepared.program, prepared.workers, options,
                     kernels_of=prepared.kernels_of) as engine:
        streamed = []
        engine.on_tokens = lambda request, tokens: streamed.extend(tokens)

        def cancel_once_streaming():
            if streamed and 0 in engine.live:
                engine.cancel(0)

        [cancelled] = engine.run([Request(0, {"query": QUESTION}, 0.0, stream=True)], on_tick=cancel_once_streaming)
        while any(w.tasks for w in engine.workers):  # the worker's answer to the cancellation
            engine.poll(0.5)
        [after] = engine.run([Request(1, {"query": QUESTION}, 0.0)])
        decodes = [o for o in engine.ops if o.op == "llm.decode"]
    assert cancelled.status == "cancelled" and after.status == "ok"
    assert [o.ok for o in decodes] == [False, True]  # dropped, not run to its end
    assert after.completion_tokens > 2 * len(streamed)
