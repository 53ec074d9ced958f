"""Agents written as Python functions, traced into the agent IR (`spec/frontends.md`).

    @agent(sla_ms=2000.0)
    def rag_qa(question=Query(tokens=48)):
        docs = memory.search("handbook", question, embed_model="all-minilm-l6-v2", top_k=4)
        return llm(question, docs, model="llama-3-8b", output_tokens=256)

    module = rag_qa.trace()

Tracing calls the function once on symbolic values (MLIR values standing for what flows at run time); every
operation it calls appends one agent op, located at the user's line, so verifier messages name the user's file
and line. Control flow that depends on run-time values is written with `loop` and `branch`, never with Python
`if`/`for` on a traced value (Python would decide it once, while tracing).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from iree.compiler import ir

from hetagent.errors import HetagentError, IRError
from hetagent.ir.builder import AgentBuilder, BlockBuilder

TEXT, AUDIO, DOCS, JSON = "!agent.text", "!agent.audio", "!agent.docs", "!agent.json"

_PACKAGE = str(Path(__file__).resolve().parent)
_state = threading.local()


def _where(frame=None) -> tuple[str, int]:
    """The first frame outside this package (and contextlib): the user's line."""
    frame = frame or sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not (str(Path(path).resolve()).startswith(_PACKAGE) or path == contextlib.__file__):
            return path, frame.f_lineno
        frame = frame.f_back
    return "<unknown>", 0


def _location(where: tuple[str, int], context: ir.Context) -> ir.Location:
    return ir.Location.file(where[0], where[1], 1, context)


def _blocks() -> list[BlockBuilder]:
    if not hasattr(_state, "blocks"):
        _state.blocks = []
    return _state.blocks


def _current(what: str) -> BlockBuilder:
    blocks = _blocks()
    if not blocks:
        path, line = _where()
        raise HetagentError(f"{path}:{line}: {what}() called outside a traced agent: call it in the body of an "
                            "@agent function, and trace that with .trace() or `hetagent run FILE.py:FUNCTION`")
    return blocks[-1]


def _emit(what: str, op_name: str, operands, attrs: dict, result_types=None):
    block = _current(what)
    where = _where()
    for i, value in enumerate(operands):
        if not isinstance(value, ir.Value):
            raise HetagentError(f"{where[0]}:{where[1]}: {what}(): argument {i + 1} is {value!r} "
                                f"({type(value).__name__}), not a traced value: pass what an input or an earlier "
                                "operation returned (constants belong in keyword attributes)")
    try:
        return block.op(op_name, *operands, result_types=result_types,
                        loc=_location(where, block._builder.context), **attrs)
    except IRError as exc:
        raise IRError(f"{where[0]}:{where[1]}: {what}(): {exc}") from None


# ------------------------------------------------------------------------------------------------ inputs


class Query:
    """A text request entering the agent: the default of an agent parameter (`question=Query(tokens=48)`)."""

    op = "input.query"

    def __init__(self, *, tokens: Any = None):
        self.attrs = {"tokens": tokens}


class Audio:
    """An audio request entering the agent (`clip=Audio(sample_rate=16000, duration_s=8.0)`)."""

    op = "input.audio"

    def __init__(self, *, sample_rate: int | None = None, duration_s: float | None = None):
        self.attrs = {"sample_rate": sample_rate, "duration_s": duration_s}


# ------------------------------------------------------------------------------------------------ operations


def llm(*context: ir.Value, model: str, **attrs) -> ir.Value:
    """`llm.call`: generate text from the context pieces (text, docs, JSON), concatenated in order."""
    return _emit("llm", "llm.call", context, dict(attrs, model=model))


def tool(name: str, /, *args: ir.Value, returns: str = JSON, **attrs) -> ir.Value:
    """`tool.invoke` of the tool registered as `name` (entry-point group hetagent.tools, or an HTTP tool)."""
    return _emit("tool", "tool.invoke", args, dict(attrs, tool=name), [returns])


def stt(audio: ir.Value, *, model: str, **attrs) -> ir.Value:
    """`audio.stt`: speech to text."""
    return _emit("stt", "audio.stt", (audio,), dict(attrs, model=model))


def tts(text: ir.Value, *, model: str, **attrs) -> ir.Value:
    """`audio.tts`: text to speech."""
    return _emit("tts", "audio.tts", (text,), dict(attrs, model=model))


def transform(fn: str, /, *inputs: ir.Value, returns: str = TEXT, **attrs) -> ir.Value:
    """`data.transform` with the registered function `fn` (e.g. "concat", "pii_redact")."""
    return _emit("transform", "data.transform", inputs, dict(attrs, fn=fn), [returns])


class _Memory:
    """Memory stores (vector indexes): `memory.search` retrieves (`memory.load`), `memory.store` adds."""

    @staticmethod
    def search(store: str, query: ir.Value, /, *, embed_model: str, **attrs) -> ir.Value:
        return _emit("memory.search", "memory.load", (query,), dict(attrs, store=store, embed_model=embed_model))

    @staticmethod
    def store(store: str, /, *values: ir.Value, embed_model: str, **attrs) -> None:
        _emit("memory.store", "memory.store", values, dict(attrs, store=store, embed_model=embed_model))


memory = _Memory()


# ------------------------------------------------------------------------------------------------ control flow


class _Region:
    """Shared by loop and branch: a block being traced, ended by `yield_`."""

    def __init__(self, what: str):
        self.what = what
        self._open: BlockBuilder | None = None
        self._yielded: set[int] = set()

    @contextlib.contextmanager
    def _tracing(self, block: BlockBuilder, where: tuple[str, int]):
        blocks = _blocks()
        blocks.append(block)
        self._open = block
        try:
            yield
        finally:
            blocks.pop()
            self._open = None
        if id(block) not in self._yielded:
            raise HetagentError(f"{where[0]}:{where[1]}: this {self.what} region does not end with yield_(...): "
                                "every trip of a loop and every arm of a branch gives its values with yield_")

    def yield_(self, *values: ir.Value) -> None:
        """The values this region gives: a loop's next carried values, a branch arm's results."""
        where = _where()
        if self._open is None or _blocks()[-1] is not self._open:
            raise HetagentError(f"{where[0]}:{where[1]}: yield_() outside its {self.what} region")
        for i, value in enumerate(values):
            if not isinstance(value, ir.Value):
                raise HetagentError(f"{where[0]}:{where[1]}: yield_(): value {i + 1} is {value!r}, not a traced value")
        self._open.op("control.yield", *values, loc=_location(where, self._open._builder.context))
        self._yielded.add(id(self._open))


class loop(_Region):
    """A bounded `control.loop` carrying `init`:

        with loop(question, max_trips=3, expected_trips=1.6, until="no_tool_call") as trip:
            thought = llm(trip.carried, model="llama-3-8b")
            trip.yield_(transform("concat", trip.carried, thought))
        context = trip.result
    """

    def __init__(self, *init: ir.Value, max_trips: int, expected_trips: float, until: str | None = None, **attrs):
        super().__init__("loop")
        self._init, self._attrs = init, dict(attrs, max_trips=max_trips, expected_trips=expected_trips, until=until)
        self._op = None

    def __enter__(self) -> "loop":
        parent = _current("loop")
        where = _where()
        for i, value in enumerate(self._init):
            if not isinstance(value, ir.Value):
                raise HetagentError(f"{where[0]}:{where[1]}: loop(): carried value {i + 1} is {value!r}, not a traced value")
        try:
            with parent.loop(*self._init, loc=_location(where, parent._builder.context), **self._attrs) as body:
                self._op = body
        except IRError as exc:
            raise IRError(f"{where[0]}:{where[1]}: loop(): {exc}") from None
        self._region = self._tracing(body, where)
        self._region.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        return bool(self._region.__exit__(*exc))

    @property
    def carried(self):
        """The carried values at the start of a trip (one value, or a tuple when the loop carries several)."""
        return _one(self._op.args)

    @property
    def result(self):
        """The carried values after the last trip (one value, or a tuple)."""
        return _one(self._op.results)


class branch(_Region):
    """A `control.branch` on `condition`, decided at run time by the registered `predicate`:

        with branch(answer, predicate="is_safe", p_then=0.9) as choice:
            with choice.then:
                choice.yield_(answer)
            with choice.otherwise:
                choice.yield_(transform("pii_redact", answer))
        safe = choice.result

    `returns` gives the result types (default: one value of the condition's type).
    """

    def __init__(self, condition: ir.Value, *, predicate: str, p_then: float | None = None,
                 returns: tuple[str, ...] | None = None, **attrs):
        super().__init__("branch")
        self._condition, self._returns = condition, returns
        self._attrs = dict(attrs, predicate=predicate, p_then=p_then)
        self._op = None

    def __enter__(self) -> "branch":
        parent = _current("branch")
        where = _where()
        if not isinstance(self._condition, ir.Value):
            raise HetagentError(f"{where[0]}:{where[1]}: branch(): the condition {self._condition!r} is not a traced value")
        returns = list(self._returns) if self._returns is not None else [str(self._condition.type)]
        try:
            with parent.branch(self._condition, result_types=returns, loc=_location(where, parent._builder.context),
                               **self._attrs) as op:
                self._op = op
        except IRError as exc:
            raise IRError(f"{where[0]}:{where[1]}: branch(): {exc}") from None
        return self

    def __exit__(self, *exc) -> bool:
        return False

    @property
    def then(self):
        """Trace the region run when the predicate holds."""
        return self._tracing(self._op.then_, _where())

    @property
    def otherwise(self):
        """Trace the region run when it does not."""
        return self._tracing(self._op.else_, _where())

    @property
    def result(self):
        return _one(self._op.results)


def _one(values: tuple):
    return values[0] if len(values) == 1 else values


# ------------------------------------------------------------------------------------------------ agents


class Agent:
    """A traceable agent: the function, its graph name and its graph attributes (sla_ms, description...)."""

    def __init__(self, fn: Callable, name: str | None = None, **attrs):
        functools.update_wrapper(self, fn)
        self.fn, self.name, self.attrs = fn, name or fn.__name__, attrs
        self.source = (inspect.getsourcefile(fn) or fn.__code__.co_filename, fn.__code__.co_firstlineno)

    def __call__(self, *args):
        """Inside a traced agent: inline this one (a sub-agent). Outside one its operations have nowhere to go:
        trace it instead (`.trace()`, or `hetagent run FILE.py:NAME`)."""
        return self.fn(*args)

    def trace(self) -> ir.Module:
        """The agent as an MLIR module holding one agent.graph (not yet verified)."""
        builder = AgentBuilder()
        where = f"{self.source[0]}:{self.source[1]}"
        context = builder.context
        with builder.graph(self.name, loc=_location(self.source, context), **self.attrs) as graph:
            blocks = _blocks()
            blocks.append(graph)
            try:
                inputs = [self._input(name, parameter, graph, where)
                          for name, parameter in inspect.signature(self.fn).parameters.items()]
                returned = self.fn(*inputs)
            finally:
                blocks.pop()
            values = () if returned is None else returned if isinstance(returned, tuple) else (returned,)
            for i, value in enumerate(values):
                if not isinstance(value, ir.Value):
                    raise HetagentError(f"{where}: agent {self.name!r} returns {value!r} as value {i + 1}: return "
                                        "what its operations produced (one value or a tuple)")
            graph.op("agent.return", *values, loc=_location(self.source, context))
        return builder.module

    def _input(self, name: str, parameter: inspect.Parameter, graph: BlockBuilder, where: str) -> ir.Value:
        declared = parameter.default
        if declared is inspect.Parameter.empty:
            declared = Query()
        if not isinstance(declared, (Query, Audio)):
            raise HetagentError(f"{where}: parameter {name!r} of agent {self.name!r}: its default must declare the "
                                f"input, Query(tokens=...) or Audio(sample_rate=..., duration_s=...), not {declared!r}")
        try:
            return graph.op(declared.op, loc=_location(self.source, graph._builder.context), **declared.attrs)
        except IRError as exc:
            raise IRError(f"{where}: parameter {name!r}: {exc}") from None


def agent(fn: Callable | None = None, /, *, name: str | None = None, **attrs):
    """Decorate a function as an agent: `@agent` or `@agent(sla_ms=3000.0, description="...")`."""
    if fn is None:
        return lambda f: Agent(f, name, **attrs)
    return Agent(fn, name, **attrs)
