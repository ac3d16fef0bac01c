"""Home Assistant MQTT discovery: the box as one device, its cameras as entities.

Discovery adds no data of its own. Every entity points at a topic the daemon already
publishes (SPEC section 3), so Home Assistant sees exactly what the district sees and
the resident's `share` consent holds there too: a `share: none` camera gets no entity
at all (not even its name leaves the box), a `share: events` camera gets no image
entity. Disabled cameras publish nothing, so they get no entities either.

Pure: config in, typed messages out (edge/messages.py: each camera's entities name it).
The configs are retained, so Home Assistant finds them whenever it starts; the daemon
also sends them again when Home Assistant announces itself (`online` on
`<prefix>/status`), in case the broker lost them.
Topic shape: `<prefix>/<component>/<node_id>/<object_id>/config`, where Home Assistant
accepts only [a-zA-Z0-9_-] in node and object ids (box and camera ids always fit).
"""

from __future__ import annotations

import json
import math
from typing import Any

from edge import __version__
from edge.config import CameraConfig, Config, HomeAssistantConfig
from edge.health import HEALTH_STATES  # SPEC 3.5, with starting and offline (issue 18)
from edge.messages import Messages, Outgoing
from edge.status import CameraState
from edge.topics import Topics

ONLINE, OFFLINE = "online", "offline"  # payloads of P/status (edge/mqtt.py) and of Home Assistant's birth/will
CAMERA_STATES = tuple(state.value for state in CameraState)  # SPEC 3.4
MIN_EXPIRE_S = 10


def status_topic(ha: HomeAssistantConfig) -> str:
    """Where Home Assistant announces itself (birth `online`, will `offline`)."""
    return f"{ha.prefix}/status"


def node_id(box_id: str) -> str:
    return f"nvr-edge-{box_id}"


def _device(box_id: str) -> dict[str, Any]:
    return {
        "identifiers": [node_id(box_id)],
        "name": f"nvr-edge {box_id}",
        "manufacturer": "nvr-edge",
        "model": "edge ingest daemon",
        "sw_version": __version__,
    }


def _stats_value(camera: str, key: str) -> str:
    """A template reading one camera's figure from the stats JSON (camera ids need the bracket form)."""
    return f"{{{{ value_json.cameras['{camera}'].{key} }}}}"


def _camera_entities(cam_id: str, cam: CameraConfig, topics: Topics, expire_after: int) -> list[tuple[str, str, dict]]:
    """(component, object id, entity-specific fields) for one camera, as its `share` allows."""
    label = cam.name or cam_id
    stats = {"state_topic": topics.stats, "expire_after": expire_after, "entity_category": "diagnostic"}
    entities: list[tuple[str, str, dict]] = [
        (
            "binary_sensor",
            f"{cam_id}_motion",
            {
                "name": f"{label} motion",
                "device_class": "motion",
                "state_topic": topics.motion(cam_id),
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        ),
        (
            "sensor",
            f"{cam_id}_state",
            {
                "name": f"{label} state",
                **stats,
                "value_template": _stats_value(cam_id, "state"),
                "device_class": "enum",
                "options": list(CAMERA_STATES),
                # The camera's whole stats entry (error in words, reconnects, ...) as attributes.
                "json_attributes_topic": topics.stats,
                "json_attributes_template": f"{{{{ value_json.cameras['{cam_id}'] | tojson }}}}",
            },
        ),
        (
            "sensor",
            f"{cam_id}_fps",
            {
                "name": f"{label} fps",
                **stats,
                "value_template": _stats_value(cam_id, "fps_in"),
                "unit_of_measurement": "fps",
                "state_class": "measurement",
            },
        ),
    ]
    if cam.share == "full":
        entities.append(
            (
                "image",
                f"{cam_id}_snapshot",
                {"name": f"{label} snapshot", "image_topic": topics.snapshot(cam_id), "content_type": "image/jpeg"},
            )
        )
    return entities


def discovery_messages(config: Config, topics: Topics) -> list[Outgoing]:
    """Every discovery config of the box, in a stable order."""
    ha, box = config.homeassistant, config.box.id
    expire_after = max(MIN_EXPIRE_S, math.ceil(3 * config.mqtt.stats_interval))  # three missed stats: unknown
    entities: list[tuple[str | None, str, str, dict]] = [
        (
            None,
            "sensor",
            "health",
            {
                "name": "health",
                "state_topic": topics.health,
                "value_template": "{{ value_json.status }}",
                "device_class": "enum",
                "options": list(HEALTH_STATES),
                "json_attributes_topic": topics.health,
                "json_attributes_template": "{{ value_json.checks | tojson }}",
            },
        )
    ]
    for cam_id, cam in config.cameras.items():
        if cam.enabled and cam.share != "none":
            entities += [(cam_id, *entity) for entity in _camera_entities(cam_id, cam, topics, expire_after)]
    common = {
        "availability_topic": topics.status,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": 1,
        "device": _device(box),
        "origin": {"name": "nvr-edge", "sw_version": __version__},
    }
    messages = []
    for camera, component, object_id, fields in entities:
        payload = {**fields, "unique_id": f"nvr-edge_{box}_{object_id}", **common}
        topic = f"{ha.prefix}/{component}/{node_id(box)}/{object_id}/config"
        messages.append(Messages.discovery(topic, json.dumps(payload, separators=(",", ":")).encode(), camera))
    return messages
