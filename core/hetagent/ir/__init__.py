"""The agent IR: MLIR modules of the agent dialects (`spec/dialect.md`).

Importing this package loads IREE's MLIR Python bindings (~0.2 s); `import hetagent` alone does not.
"""

from hetagent.ir.builder import AgentBuilder
from hetagent.ir.context import new_context
from hetagent.ir.module import clone, load, parse, save, to_bytecode, to_text
from hetagent.ir.optable import AGENT_TYPES, OPS, OpDef
from hetagent.ir.passes import decompose
from hetagent.ir.verifier import Diagnostic, check, verify

__all__ = [
    "AgentBuilder",
    "AGENT_TYPES",
    "OPS",
    "OpDef",
    "Diagnostic",
    "check",
    "verify",
    "decompose",
    "clone",
    "load",
    "new_context",
    "parse",
    "save",
    "to_bytecode",
    "to_text",
]
