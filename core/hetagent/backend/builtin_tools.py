"""The tools hetagent ships (entry-point group `hetagent.tools`): a calculator and a local web search.

`web_search` is deterministic and offline: it ranks the text files of a corpus directory (the run's
`--corpus`, by default the checkout's `examples/corpus`) by TF-IDF overlap with the query, so an agent's
search step does real work without a network.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections import Counter
from functools import cache
from pathlib import Path

from hetagent.errors import HetagentError

_WORD = re.compile(r"[a-z0-9]+")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}
_EXPRESSION = re.compile(r"[-+*/%().\d\s^]{3,}")
MAX_BITS = 4096  # integers the calculator handles (~1,233 digits): big-integer work holds the GIL
MAX_EXPRESSION = 1000  # characters


def _evaluate(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return _bounded(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > 64:
                raise HetagentError("calculator: exponents above 64 are refused")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > MAX_BITS:
                raise HetagentError(f"calculator: the result would exceed {MAX_BITS} bits")
        try:
            return _bounded(_OPS[type(node.op)](left, right))
        except OverflowError:
            raise HetagentError("calculator: the result is too large for a float") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _bounded(_OPS[type(node.op)](_evaluate(node.operand)))
    raise HetagentError(f"calculator: only numbers and + - * / // % ** are allowed, not {ast.dump(node)[:40]}")


def _bounded(value):
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise HetagentError(f"calculator: numbers are limited to {MAX_BITS} bits")
    if isinstance(value, complex):
        raise HetagentError("calculator: the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise HetagentError("calculator: the result is not a finite number")
    return value


def calculator(arguments: dict, context) -> dict:
    """Evaluate `expression` (or the first arithmetic expression found in `query`)."""
    expression = arguments.get("expression")
    if expression is None:
        found = [m.strip() for m in _EXPRESSION.findall(arguments.get("query", "")) if re.search(r"\d", m)]
        if not found:
            return {"expression": None, "result": None, "note": "no arithmetic expression in the query"}
        expression = max(found, key=len)
    if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION:
        raise HetagentError(f"calculator: the expression must be a string of at most {MAX_EXPRESSION} characters")
    try:
        value = _evaluate(ast.parse(expression.replace("^", "**"), mode="eval").body)
    except (SyntaxError, ZeroDivisionError, RecursionError, MemoryError) as exc:
        return {"expression": expression, "result": None, "note": str(exc)}
    return {"expression": expression, "result": value}


@cache
def _corpus(directory: Path) -> tuple[list[tuple[str, str, Counter]], dict[str, float]]:
    documents = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".txt", ".md")):
        text = path.read_text(errors="replace")
        documents.append((str(path.relative_to(directory)), text, Counter(_WORD.findall(text.lower()))))
    frequency = Counter(word for _, _, words in documents for word in words)
    idf = {word: math.log((1 + len(documents)) / (1 + n)) + 1 for word, n in frequency.items()}
    return documents, idf


def web_search(arguments: dict, context) -> dict:
    """The `top_k` (default 3) corpus files sharing the most (idf-weighted) words with `query`."""
    if context.corpus is None or not Path(context.corpus).is_dir():
        raise HetagentError(f"web_search: corpus directory {context.corpus} does not exist (pass --corpus DIR)")
    documents, idf = _corpus(Path(context.corpus).resolve())
    query = Counter(_WORD.findall(str(arguments.get("query", "")).lower()))
    scored = []
    for name, text, words in documents:
        score = sum(idf[w] * min(n, words[w]) for w, n in query.items() if w in words)
        if score > 0:
            scored.append((-score, name, text))
    hits = [{"source": name, "score": round(-negative, 3), "snippet": " ".join(text.split())[:240]}
            for negative, name, text in sorted(scored)[: int(arguments.get("top_k", 3))]]
    return {"query": arguments.get("query", ""), "results": hits}
