"""Where `hetagent calibrate` keeps what it measured: one calibration per backend and host, in the cache dir.

Cache dir: `$HETAGENT_CACHE_DIR`, else `$XDG_CACHE_HOME/hetagent`, else `~/.cache/hetagent`. A calibration is
stored as `calibration/<backend>/<host>.json` and used by every later estimate on that host.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from hetagent.cost.curves import Calibration

ENV_CACHE_DIR = "HETAGENT_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "hetagent"
    return Path.home() / ".cache" / "hetagent"


def host_id() -> str:
    """This machine's name, made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def calibration_path(backend: str) -> Path:
    return cache_dir() / "calibration" / backend / f"{host_id()}.json"


def save_host_calibration(backend: str, calibration: Calibration) -> Path:
    path = calibration_path(backend)
    calibration.save(path)
    return path


def host_calibrations() -> list[Calibration]:
    """Every calibration stored for this host, any backend."""
    root = cache_dir() / "calibration"
    return [Calibration.load(path) for path in sorted(root.glob(f"*/{host_id()}.json"))]
