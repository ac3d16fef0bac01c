"""MQTT topic names (SPEC section 3), in one place so no module spells a topic itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Topics under P = <topic_prefix>/<box.id>."""

    prefix: str
    box: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.box}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    def thumbnail(self, event_id: str) -> str:
        return f"{self.base}/events/{event_id}/thumbnail"

    def motion(self, camera: str) -> str:
        return f"{self.base}/cameras/{camera}/motion"

    def snapshot(self, camera: str) -> str:
        return f"{self.base}/cameras/{camera}/snapshot"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def mosaic(self) -> str:
        return f"{self.base}/mosaic"

    @property
    def cmd_health(self) -> str:
        return f"{self.base}/cmd/health"

    @property
    def detect_set_filter(self) -> str:
        return f"{self.base}/cameras/+/detect/set"

    def detect_set_camera(self, topic: str) -> str | None:
        """The camera id of a `.../cameras/<cam>/detect/set` topic, else None."""
        head = f"{self.base}/cameras/"
        if not (topic.startswith(head) and topic.endswith("/detect/set")):
            return None
        camera = topic[len(head) : -len("/detect/set")]
        return camera if camera and "/" not in camera else None
