"""hetagent-conformance: the backend conformance suite (`spec/conformance.md`).

`run(backend, ...)` is what `hetagent conformance BACKEND` calls: pytest over the suite's tests
(`hetagent_conformance/suite`), with this package's pytest plugin, writing the JSON report.
"""

from __future__ import annotations

import os
from pathlib import Path

from hetagent_conformance.plugin import DTYPES, TIERS

__version__ = "0.1.0"
SUITE = Path(__file__).parent / "suite"


def run(backend: str, *, report: str | Path, tiers=tuple(TIERS), dtypes=DTYPES, pytest_args=()) -> int:
    """Run the suite against `backend`; returns pytest's exit status (0: no failure)."""
    import pytest

    args = [
        str(SUITE),
        f"--hetagent-backend={backend}",
        f"--hetagent-tier={','.join(tiers)}",
        f"--hetagent-dtype={','.join(dtypes)}",
        f"--hetagent-report={report}",
        # the suite is its own project: no ini file or rootdir of wherever it is run from, no cache directory
        f"--rootdir={SUITE}", "-c", os.devnull, "-p", "no:cacheprovider",
        "-q", "--no-header", "--tb=line", "-rN",
        *pytest_args,
    ]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "hetagent_conformance.plugin"]
    return int(pytest.main(args))
