"""How long something was, in words a technician reads at a glance ("3 min", "2 h 5 min")."""

from __future__ import annotations


def in_words(seconds: float) -> str:
    """Whole seconds under 2 min, minutes under 2 h, hours and minutes under 2 days, then days."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"
