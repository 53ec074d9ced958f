"""Front-ends: agents as people write them, turned into the agent IR (`spec/frontends.md`).

- `hetagent.agent`: an agent is a decorated Python function, traced into an agent.graph (`trace.py`).
- `hetagent.agent.langgraph`: a LangGraph `StateGraph` imported into one (needs `hetagent[langgraph]`).
- `load_agent`: the one way every command turns an AGENT argument (`.mlir`, `file.py:fn`, `module:fn`,
  `module:graph`) into a module.

Front-ends sit just above the IR: they build modules and never import the compiler or the runtime.
"""

from hetagent.agent.loader import load_agent
from hetagent.agent.trace import AUDIO, DOCS, JSON, TEXT, Agent, Audio, Query, agent, branch, llm, loop, memory, stt, \
    tool, transform, tts

__all__ = ["agent", "Agent", "Query", "Audio", "llm", "tool", "memory", "stt", "tts", "transform", "loop", "branch",
           "TEXT", "AUDIO", "DOCS", "JSON", "load_agent"]
