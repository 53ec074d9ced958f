"""Model cards: architecture -> parameters, FLOPs, bytes, KV size."""

from hetagent.dtypes import BYTES_PER_ELEMENT
from hetagent.models.card import MODEL_KINDS, ModelCard
from hetagent.models.catalog import CARDS, card, resolve

__all__ = ["BYTES_PER_ELEMENT", "MODEL_KINDS", "ModelCard", "CARDS", "card", "resolve"]
