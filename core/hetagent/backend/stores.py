"""Memory stores on disk: a directory of text files, chunked, embedded and indexed.

`hetagent index DIR -o INDEX` writes:

    INDEX/documents.jsonl   one chunk per line, in index order: {"source": relative path, "chunk": n, "text": ...}
    INDEX/meta.json         {"format": 1, "embed_model": ..., "dim": ..., "count": ..., "directory": ..., "index": ...}
    INDEX/<index>           the vector index over unit-length embeddings (cosine similarity), written by the
                            executor that searches it (its `write_index`, e.g. hetagent-cpu's FAISS file)

Files are read as UTF-8 text (`.txt`, `.md`), split at blank lines into chunks of at most `CHUNK_CHARS`
characters. The embeddings come from the embedding model's compiled kernel, run by the engine. The core knows
the documents and the metadata; the index file is the searching backend's own format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hetagent.errors import HetagentError

INDEX_FORMAT = 1
CHUNK_CHARS = 480
TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Store:
    documents: list[dict]
    meta: dict
    path: Path

    @property
    def index_file(self) -> Path:
        return self.path / self.meta["index"]


def chunks(directory: Path) -> list[dict]:
    if not directory.is_dir():
        raise HetagentError(f"{directory}: not a directory (hetagent index takes a directory of text files)")
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES):
        current = ""
        pieces = []
        for paragraph in (p.strip() for p in path.read_text(errors="replace").split("\n\n")):
            if current and len(current) + len(paragraph) + 2 > CHUNK_CHARS:
                pieces.append(current)
                current = ""
            current = f"{current}\n\n{paragraph}" if current else paragraph[:CHUNK_CHARS]
        pieces += [current] if current else []
        found += [{"source": str(path.relative_to(directory)), "chunk": i, "text": t} for i, t in enumerate(pieces)]
    if not found:
        raise HetagentError(f"{directory}: no {' or '.join(TEXT_SUFFIXES)} files to index")
    return found


def build_store(directory: Path, out: Path, *, embed_model: str, embed: Callable[[list[str]], np.ndarray],
                write_index: Callable[[np.ndarray, Path], str]) -> dict:
    """Chunk, embed and index `directory` into `out`; `write_index(vectors, out)` writes the vector index and
    returns its file name (the searching executor's `write_index`)."""
    documents = chunks(directory)
    vectors = np.ascontiguousarray(embed([d["text"] for d in documents]), dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    index = write_index(vectors, out)
    (out / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in documents))
    meta = {"format": INDEX_FORMAT, "embed_model": embed_model, "dim": int(vectors.shape[1]),
            "count": len(documents), "directory": str(directory), "index": index}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_store(path: str | Path) -> Store:
    path = Path(path)
    if not (path / "meta.json").exists():
        raise HetagentError(f"{path}: not an index (no meta.json); build one with `hetagent index DIR -o {path}`")
    meta = json.loads((path / "meta.json").read_text())
    documents = [json.loads(line) for line in (path / "documents.jsonl").read_text().splitlines()]
    return Store(documents, meta, path)
