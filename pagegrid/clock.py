"""The one clock PageGrid reads (tests move it to cross day and month boundaries)."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime


def now() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)
