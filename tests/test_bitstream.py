"""edge.bitstream byte by byte: NAL splitting in both layouts, parameter sets, slice kinds,
SPS claims, and hostile bytes (truncated, garbage, absurd codes) refused as None or ()."""

from __future__ import annotations

import random

import pytest

from edge.bitstream import (
    BitReader,
    BitstreamError,
    SpsInfo,
    annexb,
    annexb_spans,
    annexb_units,
    escape,
    h264_slice_kind,
    h264_sps_fields,
    length_prefixed_units,
    nal_type,
    nal_units,
    parameter_sets,
    parse_sps,
    rbsp,
    starts_with_sps,
    ue_code,
)

# Written by real encoders at 322x182 (not whole macroblocks: cropped), kept as bytes.
X264_BASELINE_SPS = bytes.fromhex("6742c00bda05467889a10000030001000003000a0f142aa0")  # 1 ref, emulation bytes
X264_HIGH_SPS = bytes.fromhex("67640015ac720441519e22684000000300400000030283c58b6118")  # 16 refs
X264_PPS = bytes.fromhex("68ce0fc8")
X265_VPS = bytes.fromhex("40010c01ffff01600000030090000003000003003c928090")
X265_SPS = bytes.fromhex("42010101600000030090000003000003003ca00a480b9c95964a924cae68080000030008000003002840")
X265_PPS = bytes.fromhex("4401c172b46240")

SC, LONG_SC = b"\x00\x00\x01", b"\x00\x00\x00\x01"


def _bits_to_bytes(bits: str) -> bytes:
    """A bit string closed with the RBSP stop bit and padded to whole bytes."""
    bits += "1"
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def h264_sps(width_mbs: int, height_mbs: int, refs: int, crop: tuple[int, int, int, int] | None = None) -> bytes:
    """A baseline-profile H.264 SPS NAL unit (header included) with these fields."""
    bits = f"{66:08b}" + "0" * 16 + ue_code(0)  # profile, constraints + level, sps id
    bits += ue_code(0) + ue_code(0) + ue_code(0)  # log2_max_frame_num, poc type 0, its lsb size
    bits += ue_code(refs) + "0" + ue_code(width_mbs - 1) + ue_code(height_mbs - 1) + "1" + "1"
    bits += "0" if crop is None else "1" + "".join(ue_code(c) for c in crop)
    bits += "0"  # no VUI
    return b"\x67" + escape(_bits_to_bytes(bits))


def h264_slice(nal_header: int, slice_type: int, first_mb: int = 0) -> bytes:
    return bytes([nal_header]) + _bits_to_bytes(ue_code(first_mb) + ue_code(slice_type) + ue_code(0))


# -- splitting --------------------------------------------------------------------------


def test_annexb_units_with_short_and_long_start_codes_and_trailing_zeros() -> None:
    data = LONG_SC + X264_BASELINE_SPS + LONG_SC + X264_PPS + SC + b"\x65\x88\x84" + b"\x00\x00"
    assert annexb_units(data) == [X264_BASELINE_SPS, X264_PPS, b"\x65\x88\x84"]
    start, end = annexb_spans(data)[0]
    assert data[start:end] == X264_BASELINE_SPS


def test_annexb_units_ignore_leading_garbage_and_empty_units() -> None:
    assert annexb_units(b"\xff\xfe" + SC + SC + b"\x00\x00" + SC + b"\x41\x9a") == [b"\x41\x9a"]
    assert annexb_units(b"") == []
    assert annexb_units(SC) == []
    assert annexb_units(b"\x00" * 64) == []


def test_annexb_joins_units_as_extradata() -> None:
    assert annexb([X264_BASELINE_SPS, X264_PPS]) == LONG_SC + X264_BASELINE_SPS + LONG_SC + X264_PPS
    assert annexb_units(annexb([X264_BASELINE_SPS, X264_PPS])) == [X264_BASELINE_SPS, X264_PPS]


def test_length_prefixed_units_when_lengths_add_up() -> None:
    data = len(X264_PPS).to_bytes(4, "big") + X264_PPS + (3).to_bytes(4, "big") + b"\x41\x9a\x01"
    assert length_prefixed_units(data, len(data)) == [X264_PPS, b"\x41\x9a\x01"]
    assert length_prefixed_units(data[:6], len(data)) == [X264_PPS[:2]]  # only the head of a bigger unit
    assert length_prefixed_units(data + b"\x00\x00", len(data) + 2) is None  # two bytes left over
    assert length_prefixed_units(b"\x00\x00\x00\x00\x41", 5) is None  # a zero length
    assert length_prefixed_units(b"\x7f\xff\xff\xff\x41", 5) is None  # an absurd length


def test_nal_units_tell_a_length_that_looks_like_a_start_code_from_one() -> None:
    unit = b"\x41" + bytes(range(1, 256)) * 2  # 0x1ff bytes
    assert nal_units(b"\x00\x00\x01\x1b" + unit[:0x11B]) == [unit[:0x11B]]  # 00 00 01 1b: a length
    assert nal_units(b"\x00\x00\x01\x1b" + unit[:0x11B], 0x11F) == [unit[:0x11B]]
    assert nal_units(b"\x00\x00\x01\x1b" + unit[:40], 0x11F) == [unit[:40]]  # the head of it
    assert nal_units(SC + b"\x41\x9a" + SC + b"\x06\x05") == [b"\x41\x9a", b"\x06\x05"]
    assert nal_units(b"\x12\x34\x56") == []  # neither layout


# -- NAL types and parameter sets -------------------------------------------------------


def test_nal_types_per_codec() -> None:
    assert nal_type(X264_BASELINE_SPS, "h264") == 7
    assert nal_type(X265_SPS, "hevc") == 33
    assert nal_type(X265_VPS, "hevc") == 32
    assert nal_type(b"", "h264") is None
    assert nal_type(X264_PPS, "mjpeg") is None


def test_parameter_sets_stop_at_the_first_slice() -> None:
    unit = annexb([X264_BASELINE_SPS, X264_PPS, b"\x06\x05\x01\x80", b"\x65\x88\x84", b"\x67\x99"])
    assert parameter_sets(unit, "h264") == (X264_BASELINE_SPS, X264_PPS)
    assert parameter_sets(annexb([X265_VPS, X265_SPS, X265_PPS, b"\x26\x01\xaf"]), "hevc") == (
        X265_VPS,
        X265_SPS,
        X265_PPS,
    )
    assert parameter_sets(unit, "mjpeg") == ()
    assert parameter_sets(b"", "h264") == ()


def test_starts_with_sps() -> None:
    assert starts_with_sps((LONG_SC + X264_BASELINE_SPS)[:8], "h264")
    assert not starts_with_sps((LONG_SC + X264_PPS)[:8], "h264")
    assert starts_with_sps((SC + X265_VPS)[:8], "hevc")
    assert starts_with_sps((SC + X265_SPS)[:8], "hevc")
    assert not starts_with_sps((SC + X265_PPS)[:8], "hevc")
    assert not starts_with_sps(SC, "h264")  # a start code and nothing after it
    assert not starts_with_sps(LONG_SC + X264_BASELINE_SPS, "vp8")


# -- bits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"\x00\x00\x00", b"\x00\x00\x03\x00"),
        (b"\x00\x00\x01\x00\x00\x02", b"\x00\x00\x03\x01\x00\x00\x03\x02"),
        (b"\x00\x00\x03", b"\x00\x00\x03\x03"),
        (b"\x00\x00\x04", b"\x00\x00\x04"),
        (b"\x00\x00\x00\x00", b"\x00\x00\x03\x00\x00"),
    ],
)
def test_emulation_prevention_both_ways(raw: bytes, escaped: bytes) -> None:
    assert escape(raw) == escaped
    assert rbsp(escaped) == raw


def test_emulation_prevention_round_trips_random_bytes() -> None:
    rng = random.Random(16)
    for _ in range(200):
        raw = bytes(rng.choice((0, 0, 0, 1, 2, 3, 4, 255)) for _ in range(rng.randrange(40)))
        escaped = escape(raw)
        assert rbsp(escaped) == raw
        assert SC not in escaped and b"\x00\x00\x00" not in escaped


def test_exp_golomb_codes_read_back() -> None:
    values = [0, 1, 2, 3, 7, 8, 254, 65535, (1 << 31) - 1]
    bits = BitReader(_bits_to_bytes("".join(ue_code(v) for v in values)))
    assert [bits.ue() for _ in values] == values
    signed = BitReader(_bits_to_bytes("".join(ue_code(k) for k in range(5))))
    assert [signed.se() for _ in range(5)] == [0, 1, -1, 2, -2]


def test_bit_reader_refuses_reading_past_the_end_and_absurd_codes() -> None:
    bits = BitReader(b"\xa5")
    assert bits.u(4) == 0xA and bits.pos == 4
    with pytest.raises(BitstreamError):
        bits.u(5)
    with pytest.raises(BitstreamError):
        BitReader(b"\x00" * 8 + b"\xff").ue()  # 64 leading zeros: no 32-bit value
    with pytest.raises(BitstreamError):
        BitReader(b"\x00\x00").ue()  # no stop bit at all
    assert issubclass(BitstreamError, ValueError)


# -- slice kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(("slice_type", "kind"), [(0, "P"), (5, "P"), (1, "B"), (6, "B"), (2, "I"), (7, "I"), (3, "I")])
def test_slice_kind_from_the_first_slice_header(slice_type: int, kind: str) -> None:
    data = annexb([b"\x09\xf0", b"\x06\x05\x01\x80", h264_slice(0x41, slice_type, first_mb=300)])
    assert h264_slice_kind(data) == kind
    prefixed = b"".join(len(u).to_bytes(4, "big") + u for u in annexb_units(data))
    assert h264_slice_kind(prefixed) == kind
    assert h264_slice_kind(data[:40], len(data) + 1000) == kind  # the head of a large packet


def test_slice_kind_none_without_a_readable_slice() -> None:
    assert h264_slice_kind(annexb([X264_BASELINE_SPS, X264_PPS])) is None
    assert h264_slice_kind(SC + b"\x41") is None  # a slice header cut off
    assert h264_slice_kind(SC + b"\x41" + b"\x00" * 14 + b"\x01") is None  # an absurd Exp-Golomb code
    assert h264_slice_kind(b"") is None
    assert h264_slice_kind(b"\xde\xad\xbe\xef" * 64) is None


# -- SPS ------------------------------------------------------------------------------------


def test_sps_as_real_encoders_write_it() -> None:
    assert parse_sps(X264_BASELINE_SPS, "h264") == SpsInfo(322, 182, 1)
    assert parse_sps(X264_HIGH_SPS, "h264") == SpsInfo(322, 182, 16)
    assert parse_sps(X265_SPS, "hevc") == SpsInfo(322, 182, 3)
    assert SpsInfo(322, 182, 3).pictures == 4


def test_sps_of_another_codec_or_type_is_none() -> None:
    assert parse_sps(X264_BASELINE_SPS, "hevc") is None
    assert parse_sps(X265_SPS, "h264") is None
    assert parse_sps(X264_PPS, "h264") is None
    assert parse_sps(X265_VPS, "hevc") is None
    assert parse_sps(X264_BASELINE_SPS, "mjpeg") is None
    assert parse_sps(b"", "h264") is None
    assert parse_sps(b"\x67", "h264") is None
    assert parse_sps(b"\x42\x01", "hevc") is None


def test_sps_fields_and_cropping() -> None:
    nal = h264_sps(20, 12, 4, crop=(0, 1, 0, 3))
    fields = h264_sps_fields(rbsp(nal[1:]))
    assert (fields.width_mbs, fields.height_units, fields.refs, fields.crop) == (20, 12, 4, (0, 1, 0, 3))
    assert fields.size() == (318, 186)
    assert parse_sps(nal, "h264") == SpsInfo(318, 186, 4)
    bits = BitReader(rbsp(nal[1:]))
    bits.pos = fields.refs_at
    assert bits.ue() == 4  # the position a rewriter copies up to


def test_absurd_claims_are_read_as_claimed_for_the_limits_to_refuse() -> None:
    assert parse_sps(h264_sps(999, 999, 16), "h264") == SpsInfo(15984, 15984, 16)
    assert parse_sps(h264_sps(1 << 20, 1 << 20, 1), "h264") == SpsInfo(16 << 20, 16 << 20, 1)


def test_sps_cropped_to_nothing_or_less_is_none() -> None:
    assert parse_sps(h264_sps(1, 1, 1, crop=(0, 8, 0, 0)), "h264") is None
    assert parse_sps(h264_sps(1, 1, 1, crop=(0, 0, 0, 100)), "h264") is None


def test_truncated_sps_is_none_until_its_size_fields_are_all_there() -> None:
    """Only the fields up to the cropping are read: a cut after them reads as the whole SPS."""
    for nal, codec in ((X264_BASELINE_SPS, "h264"), (X264_HIGH_SPS, "h264"), (X265_SPS, "hevc")):
        whole = parse_sps(nal, codec)
        readings = [parse_sps(nal[:cut], codec) for cut in range(len(nal) + 1)]
        first = readings.index(whole)
        assert first > 8 and readings[:first] == [None] * first and readings[first:] == [whole] * (len(nal) + 1 - first)


def test_garbage_sps_never_raises() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 48)))
        info = parse_sps(b"\x67" + body, "h264")
        assert info is None or (info.width > 0 and info.height > 0)
        info = parse_sps(b"\x42\x01" + body, "hevc")
        assert info is None or (info.width > 0 and info.height > 0)
    assert parse_sps(b"\x67" + b"\x00" * 64, "h264") is None  # zeros only: an endless Exp-Golomb prefix


def test_emulation_prevention_inside_an_sps_is_removed_before_reading() -> None:
    assert b"\x00\x00\x03" in X264_BASELINE_SPS
    raw = rbsp(X264_BASELINE_SPS[1:])
    assert b"\x00\x00\x03" not in raw
    assert escape(raw) == X264_BASELINE_SPS[1:]
