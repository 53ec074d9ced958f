"""Deterministic stand-ins shared by the LangGraph examples: the model, tools and retriever both LangGraph itself and
`hetagent run` use, so an imported graph's answer can be compared with LangGraph's own.

- `StandinChatModel`: the LLM hetagent runs for a model without weights (tiny-llama, random weights of seed 0,
  byte tokens, greedy), here in the torch reference decoder. Its prompt is the messages' text joined by blank
  lines, as hetagent joins an llm.call's context; a `<tool_call>{"tool": ..., "arguments": ...}</tool_call>` in
  its output becomes a LangChain tool call (the convention of spec/runtime.md).
- `calculator`, `web_search`: LangChain tools over hetagent's own tools of those names (hetagent.tools).
- `CorpusRetriever`: a retriever over examples/corpus (hetagent's TF-IDF search).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool

from hetagent.agent.langgraph import tool_calls
from hetagent.backend import builtin_tools, text
from hetagent.backend.tools import ToolContext
from hetagent.backend.transforms import render

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
STANDIN = "tiny-llama"


@cache
def _decoder():
    from hetagent.models import reference
    from hetagent.models.catalog import card
    from hetagent.backend.weights import RANDOM_SEED

    model = card(STANDIN)
    return model, reference.random_weights(model, seed=RANDOM_SEED, dtype=model.default_dtype)


def generate(prompt: str, max_tokens: int) -> str:
    """Greedy generation by hetagent's stand-in LLM: what `hetagent run` answers for this prompt."""
    import numpy as np
    import torch

    from hetagent.models import reference

    model, weights = _decoder()
    ids = text.encode(prompt)
    capacity = len(ids) + max_tokens
    with torch.no_grad():
        logits, kv = reference.prefill(model, weights, torch.tensor([ids]), torch.tensor([len(ids)]), capacity)
        tokens = [text.sample(np.asarray(logits[0]), 0.0, 0, 0)]
        while len(tokens) < max_tokens and tokens[-1] != text.EOS:
            position = len(ids) + len(tokens) - 1
            logits, kv = reference.decode(model, weights, torch.tensor([tokens[-1]]), torch.tensor([position]), kv)
            tokens.append(text.sample(np.asarray(logits[0]), 0.0, 0, 0))
    return text.decode(tokens)


class StandinChatModel(BaseChatModel):
    """A chat model answering as hetagent's stand-in LLM; `model_name` is the model hetagent plans for."""

    model_name: str = "llama-3-8b"
    max_tokens: int = 24

    @property
    def _llm_type(self) -> str:
        return "hetagent-standin"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        answer = generate("\n\n".join(render(m.content) for m in messages), self.max_tokens)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer, tool_calls=tool_calls(answer)))])

    def bind_tools(self, tools, **kwargs):
        return self  # the stand-in's prompt carries no tool schemas


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return json.dumps(builtin_tools.calculator({"expression": expression}, None), sort_keys=True)


@tool
def web_search(query: str) -> str:
    """Search the local corpus."""
    return json.dumps(builtin_tools.web_search({"query": query}, ToolContext(CORPUS)), sort_keys=True)


class CorpusRetriever(BaseRetriever):
    """The `k` corpus files that best match the query."""

    k: int = 2

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = builtin_tools.web_search({"query": query, "top_k": self.k}, ToolContext(CORPUS))["results"]
        return [Document(page_content=h["snippet"], metadata={"source": h["source"]}) for h in hits]
