"""The on-disk compile cache: exported model functions and compiled artifacts, addressed by content keys.

Location: `$HETAGENT_CACHE_DIR`, else `$XDG_CACHE_HOME/hetagent`, else `~/.cache/hetagent`.

    functions/<key>.mlirbc   a model function exported from torch, keyed by (function spec, torch version,
                             the reference decoder's source): a hit skips importing torch altogether
    artifacts/<key>.<ext>    a compiled kernel, keyed by (function hash, pipeline hash — which covers the
                             target options —, compiler version)

Entries are written to a temporary file and renamed into place, so concurrent compilations never see a torn
file; an entry is never modified once written. Each entry's SHA-256 is recorded beside it (`<entry>.sha256`) when
it is written, and checked whenever it is read: an entry that does not match (changed, truncated, planted) is
a miss, reported and removed, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
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
        """The entry's bytes if it is there and matches its recorded hash; else None (a miss)."""
        path = self.path(namespace, key, extension)
        try:
            data = path.read_bytes()
            recorded = path.with_name(path.name + ".sha256").read_text().strip()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != recorded:
            warnings.warn(f"compile cache entry {path} does not match its recorded SHA-256; it is removed and "
                          "rebuilt")
            path.unlink(missing_ok=True)
            return None
        return data

    def recorded_sha256(self, namespace: str, key: str, extension: str) -> str:
        path = self.path(namespace, key, extension)
        return path.with_name(path.name + ".sha256").read_text().strip()

    def put(self, namespace: str, key: str, extension: str, data: bytes) -> Path:
        target = self.path(namespace, key, extension)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{key}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        fd, recorded = tempfile.mkstemp(dir=target.parent, prefix=f".{key}.")
        with os.fdopen(fd, "w") as f:
            f.write(hashlib.sha256(data).hexdigest() + "\n")
        os.replace(recorded, target.with_name(target.name + ".sha256"))  # the hash first: no entry without one
        os.replace(temporary, target)
        return target
