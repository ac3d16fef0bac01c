"""Facts from the external contract (docs/SPEC.md) that several tests check."""

# SPEC 3.1: the keys of every event payload.
EVENT_KEYS = frozenset(
    {
        "id",
        "type",
        "box",
        "camera",
        "start_time",
        "end_time",
        "score",
        "peak_score",
        "region",
        "thumbnail",
        "recordings",
    }
)
