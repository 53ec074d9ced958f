"""Vector search on the CPU with FAISS over a memory store built by `hetagent index` (`hetagent.backend.stores`).

The store's documents and metadata are the core's format; the vector index inside it is a FAISS inner-product
index over unit-length embeddings (cosine similarity), written by `SearchExecutor.write_index`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hetagent.backend.executor import Call, OneShotExecutor, Outcome
from hetagent.backend.stores import load_store
from hetagent.errors import HetagentError

INDEX_FILE = "index.faiss"


@dataclass(frozen=True)
class _Index:
    faiss: object
    documents: list[dict]
    meta: dict


class SearchExecutor(OneShotExecutor):
    @staticmethod
    def write_index(vectors: np.ndarray, out: Path) -> str:
        """The store's vector index (what `hetagent index` asks of the executor that will search it)."""
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        faiss.write_index(index, str(out / INDEX_FILE))
        return INDEX_FILE

    def __init__(self, context):
        super().__init__(context)
        self.indexes: dict[str, object] = {}

    def max_batch(self, call: Call) -> int:
        return 64  # FAISS searches a batch of queries in one call

    def _index(self, store: str):
        if store not in self.indexes:
            if store not in self.context.stores:
                raise HetagentError(f"memory store {store!r} has no index: build one with `hetagent index DIR -o "
                                    f"INDEX` and pass `--store {store}=INDEX`")
            import faiss

            loaded = load_store(self.context.stores[store])
            self.indexes[store] = _Index(faiss.read_index(str(loaded.index_file)), loaded.documents, loaded.meta)
        return self.indexes[store]

    def run(self, calls: list[Call]) -> list:
        results = []
        for store in dict.fromkeys(c.attrs["store"] for c in calls):
            group = [c for c in calls if c.attrs["store"] == store]
            try:
                index = self._index(store)
                queries = np.stack([np.asarray(c.inputs[0], dtype=np.float32) for c in group])
                if queries.shape[1] != index.faiss.d:
                    raise HetagentError(f"store {store!r} holds {index.faiss.d}-dim embeddings of "
                                        f"{index.meta['embed_model']}; the query has {queries.shape[1]} dims")
                k = max(int(c.attrs.get("top_k", 4)) for c in group)
                scores, ids = index.faiss.search(queries, k)
                for c, row, row_scores in zip(group, ids, scores):
                    top = int(c.attrs.get("top_k", 4))
                    results.append((c, Outcome(([{**index.documents[i], "score": float(s)}
                                                 for i, s in zip(row[:top], row_scores[:top]) if i >= 0],))))
            except Exception as exc:
                results += [(c, exc) for c in group]
        order = {c.task: i for i, c in enumerate(calls)}
        return [r for _, r in sorted(results, key=lambda pair: order[pair[0].task])]
