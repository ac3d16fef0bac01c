"""JPEG under a byte budget (edge/jpeg.py): what thumbnails, snapshots and the mosaic use
to fit the broker's message limit."""

import cv2
import numpy as np

from edge import jpeg


def _picture() -> np.ndarray:
    """A 640x360 picture with detail (JPEG of ~50 kB at quality 80)."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 255, (45, 80, 3), np.uint8)
    return cv2.resize(small, (640, 360), interpolation=cv2.INTER_CUBIC)


def test_a_picture_that_fits_is_encoded_once_at_its_quality() -> None:
    image = _picture()
    assert jpeg.encode_under(image, 80, 10**6) == jpeg.encode(image, 80)
    assert jpeg.encode_under(image, 80, None) == jpeg.encode(image, 80)


def test_a_picture_over_the_budget_comes_out_under_it_lower_quality_first_then_smaller() -> None:
    image = _picture()
    full = len(jpeg.encode(image, 80))
    before = jpeg.COUNTER.shrunk
    for budget in (full * 3 // 4, full // 4, 8000):
        data = jpeg.encode_under(image, 80, budget)
        assert data is not None and len(data) <= budget
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.shape[1] >= jpeg.MIN_WIDTH
    assert jpeg.COUNTER.shrunk == before + 3


def test_what_cannot_fit_is_none_and_counted() -> None:
    before = jpeg.COUNTER.too_large
    assert jpeg.encode_under(_picture(), 80, 300) is None
    assert jpeg.COUNTER.too_large == before + 1


def test_an_encoded_jpeg_is_refitted_and_bytes_that_are_no_picture_are_not() -> None:
    data = jpeg.encode(_picture(), 90)
    smaller = jpeg.fit(data, len(data) // 3)
    assert smaller is not None and len(smaller) <= len(data) // 3 and jpeg.is_jpeg(smaller)
    assert jpeg.fit(data, len(data)) is data
    assert jpeg.fit(b"\xff\xd8\xff" + b"\x00" * 5000, 1000) is None
