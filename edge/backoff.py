"""Exponential backoff with full jitter, so 24 cameras that drop together do not
reconnect in lock-step (Frigate's fixed 10 s retry is what we avoid)."""

from __future__ import annotations

import random


class Backoff:
    """Delays initial, 2x, 4x ... up to `maximum`, each drawn uniformly from [d/2, d]."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(base / 2, base)

    def reset(self) -> None:
        self._attempt = 0
