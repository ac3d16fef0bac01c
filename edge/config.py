"""Configuration models (SPEC section 2).

The motion and event models below are the seam between the config loader and the
pure detector/tracker: the detector and tracker import only these two classes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    """Base for every config model: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MotionConfig(_Strict):
    """Motion detector settings; top-level `motion:` with per-camera overrides."""

    sensitivity: int = Field(5, ge=1, le=10, description="1 = only large, clear motion; 10 = the faintest")
    frame_height: int = Field(120, ge=32, le=720, description="luma is downscaled to this height for detection")
    detect_fps: float = Field(5.0, gt=0, le=60, description="at most this many frames per second are analysed")
    min_area: float = Field(0.002, ge=0, le=0.5, description="smallest object, as a fraction of the frame area")
    lighting_fraction: float = Field(0.5, gt=0, le=1, description="a change over this fraction of the frame is lighting, not motion")


class EventConfig(_Strict):
    """Event tracker settings (top-level `events:`)."""

    min_frames: int = Field(3, ge=1, le=100, description="consecutive motion frames before an event starts")
    end_after: float = Field(5.0, gt=0, le=600, description="seconds without motion before an event ends")
    update_interval: float = Field(5.0, ge=0, le=3600, description="minimum seconds between two update messages")
    max_duration: float = Field(600.0, gt=0, description="an event longer than this is ended and a new one started")
    pre_roll: float = Field(5.0, ge=0, le=300, description="seconds of recording before the event start listed in recordings")
    post_roll: float = Field(5.0, ge=0, le=300, description="seconds of recording after the event end listed in recordings")
    thumbnail_width: int = Field(640, ge=64, le=3840)
    jpeg_quality: int = Field(80, ge=10, le=100)
