"""Prediction cache keyed by (model key, text hash): the same text is never run twice by the same model."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class PredictionCache:
    """A thread-safe LRU mapping (model key, text hash) → prediction."""

    def __init__(self, max_items: int = 50_000):
        self.max_items = max_items
        self._data: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, model_key: str, text: str) -> Any | None:
        k = (model_key, text_key(text))
        with self._lock:
            if k in self._data:
                self._data.move_to_end(k)
                self.hits += 1
                return self._data[k]
            self.misses += 1
            return None

    def put(self, model_key: str, text: str, value: Any) -> None:
        if self.max_items <= 0:
            return
        k = (model_key, text_key(text))
        with self._lock:
            self._data[k] = value
            self._data.move_to_end(k)
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
