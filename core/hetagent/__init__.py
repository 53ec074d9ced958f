"""hetagent: plan, compile and run AI-agent workloads on heterogeneous hardware.

Importing this package is cheap on purpose: it pulls in neither MLIR, nor torch, nor any vendor SDK.
Submodules import what they need when they are used.
"""

__version__ = "0.1.0"

from hetagent.errors import HetagentError  # noqa: E402

__all__ = ["HetagentError", "__version__"]
