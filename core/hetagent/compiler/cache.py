"""The on-disk compile cache: exported model functions and compiled artifacts, addressed by content keys.

Location: `$HETAGENT_CACHE_DIR`, else `$XDG_CACHE_HOME/hetagent`, else `~/.cache/hetagent`.

    functions/<key>.mlirbc   a model function exported from torch, keyed by (function spec, torch version,
                             the reference decoder's source): a hit skips importing torch altogether
    artifacts/<key>.<ext>    a compiled kernel, keyed by (function hash, pipeline hash — which covers the
                             target options —, compiler version)

Entries are written to a temporary file and renamed into place, so concurrent compilations never see a torn
file; an entry is never modified once written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def default_cache_dir() -> Path:
    if os.environ.get("HETAGENT_CACHE_DIR"):
        return Path(os.environ["HETAGENT_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "hetagent"
    return Path.home() / ".cache" / "hetagent"


def digest(*parts: str | bytes | dict) -> str:
    """SHA-256 over the parts (dicts as sorted-key JSON), hex."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):
            part = json.dumps(part, sort_keys=True)
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


class CompileCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, namespace: str, key: str, extension: str) -> Path:
        return self.root / namespace / f"{key}.{extension}"

    def get(self, namespace: str, key: str, extension: str) -> bytes | None:
        try:
            return self.path(namespace, key, extension).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, namespace: str, key: str, extension: str, data: bytes) -> Path:
        target = self.path(namespace, key, extension)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{key}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, target)
        return target
