"""THS, the human signature: scoring a behavioural challenge exactly as the original did,
and the token a passed challenge earns.

The score is the original's (mouse entropy 40 %, keystroke rhythm 60 %, human at 25 and
above). What changed is what a pass means: the server records it (`human_signatures`,
`sovereign_bridge`) and issues a signed, expiring token whose record the sensitive SQL
functions check; a client can no longer declare itself human.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from aerelion.tokens import Token, TokenSigner

COMMAND = "AUTHORIZE_COMMANDER"
THRESHOLD = 25
PURPOSE = "ths"
AUDIENCE = "aerelion"
LIFETIME = timedelta(hours=24)
MIN_DURATION_MS, MAX_DURATION_MS = 2000, 120_000


class MousePoint(BaseModel):
    x: float
    y: float
    t: float


class Keystroke(BaseModel):
    key: str = Field(max_length=20)
    downAt: float
    upAt: float


def _population_variance(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def mouse_score(trail: Sequence[MousePoint]) -> int:
    """Velocity variance, direction changes and jitter of the pointer (0 below 10 samples)."""
    if len(trail) < 10:
        return 0
    velocities, angles = [], []
    for before, after in itertools.pairwise(trail):
        dx, dy = after.x - before.x, after.y - before.y
        velocities.append(math.hypot(dx, dy) / max(after.t - before.t, 1))
        angles.append(math.atan2(dy, dx))
    changes = sum(1 for a, b in itertools.pairwise(angles) if abs(b - a) > 0.3)
    jitters = [
        abs((c.x - b.x) - (b.x - a.x)) + abs((c.y - b.y) - (b.y - a.y))
        for a, b, c in zip(trail, trail[1:], trail[2:], strict=False)
    ]
    jitter = sum(jitters) / len(jitters) if jitters else 0.0
    score = (
        min(_population_variance(velocities) * 500, 40)
        + min(changes / len(trail) * 80, 30)
        + min(jitter * 10, 30)
    )
    return min(round(score), 100)


def keystroke_score(keys: Sequence[Keystroke]) -> int:
    """Rhythm (gaps between key presses) and dwell (how long each is held); 0 below 5."""
    if len(keys) < 5:
        return 0
    gaps = [b.downAt - a.downAt for a, b in itertools.pairwise(keys)]
    dwells = [k.upAt - k.downAt for k in keys]
    score = min(math.sqrt(_population_variance(gaps)) / 5, 50) + min(
        math.sqrt(_population_variance(dwells)) / 3, 50
    )
    return min(round(score), 100)


@dataclass(frozen=True)
class Verdict:
    mouse: int
    keystroke: int

    @property
    def veracity(self) -> int:
        return round(0.4 * self.mouse + 0.6 * self.keystroke)

    @property
    def human(self) -> bool:
        return self.veracity >= THRESHOLD

    def behavioral_data(
        self, mouse_samples: int, keystroke_samples: int, duration_ms: float
    ) -> dict[str, Any]:
        return {
            "composite": self.veracity,
            "mouse": self.mouse,
            "keystroke": self.keystroke,
            "threshold": THRESHOLD,
            "mouse_sample_count": mouse_samples,
            "keystroke_sample_count": keystroke_samples,
            "challenge_duration_ms": duration_ms,
        }


def score(trail: Sequence[MousePoint], keys: Sequence[Keystroke]) -> Verdict:
    return Verdict(mouse_score(trail), keystroke_score(keys))


def issue(signer: TokenSigner, user_id: str, veracity: int) -> Token:
    """The token of a passed challenge (24 h, purpose `ths`)."""
    return signer.issue(
        purpose=PURPOSE,
        audience=AUDIENCE,
        subject=user_id,
        ttl=LIFETIME,
        claims={"score": veracity},
    )


def token_hash(value: str) -> bytes:
    """What the database stores and compares: SHA-256 of the token text."""
    return hashlib.sha256(value.encode()).digest()
