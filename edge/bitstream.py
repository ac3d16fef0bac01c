"""H.264 / H.265 bitstream syntax: NAL units, their types, parameter sets and what an SPS claims.

The one place that reads codec bytes by hand, for the camera worker (idle mode's slice
kinds), the recorder and the format guard (parameter sets, picture sizes) and the camera
simulator. Pure stdlib: scripts/camsim.py imports it under the system python3.

Everything here reads bytes a camera sent, so anything malformed (truncated, garbage,
absurd Exp-Golomb codes) ends in BitstreamError inside and in None or () outside,
never in another exception or an unbounded loop.

Why an SPS is read at all: a decoder allocates its pictures from it, so a stream can be
refused on what it claims before anything is decoded (a hostile SPS claiming 15984x15984
with 8 reference frames made FFmpeg hold gigabytes). Only the fields up to the size and
the reference count are read; anything malformed reads as None (unknown).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

START_CODE = b"\x00\x00\x01"
LONG_START_CODE = b"\x00\x00\x00\x01"
_EMULATION = b"\x00\x00\x03"
MAX_GOLOMB_ZEROS = 31  # longer prefixes encode values past 32 bits: no valid stream has them

# H.264 profiles whose SPS carries chroma format, bit depths and scaling matrices.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

H264_SLICE = 1  # coded slice of a non-IDR picture
H264_IDR = 5  # coded slice of an IDR picture
H264_SPS = 7
H264_PPS = 8
HEVC_VPS = 32
HEVC_SPS = 33
HEVC_PPS = 34


class BitstreamError(ValueError):
    """The bytes end early or hold a code no valid stream has."""


@dataclass(frozen=True, slots=True)
class _Syntax:
    """How one codec's NAL header is read, and which types matter here."""

    shift: int  # nal_unit_type = (first byte >> shift) & mask
    mask: int
    header_bytes: int
    sps: int
    parameter_sets: frozenset[int]
    leading: frozenset[int]  # types an access unit starting with its parameter sets begins with
    slices: range


_SYNTAX = {
    "h264": _Syntax(0, 0x1F, 1, H264_SPS, frozenset({H264_SPS, H264_PPS}), frozenset({H264_SPS}), range(1, 6)),
    "hevc": _Syntax(
        1,
        0x3F,
        2,
        HEVC_SPS,
        frozenset({HEVC_VPS, HEVC_SPS, HEVC_PPS}),
        frozenset({HEVC_VPS, HEVC_SPS}),
        range(0, 32),
    ),
}


def nal_type(nal: bytes, codec: str) -> int | None:
    """The nal_unit_type of a NAL unit (header included); None for an empty unit or another codec."""
    syntax = _SYNTAX.get(codec)
    if syntax is None or not nal:
        return None
    return (nal[0] >> syntax.shift) & syntax.mask


# -- splitting --------------------------------------------------------------------------


def annexb_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each non-empty NAL unit in Annex-B `data`: header included, start
    code and trailing zero bytes (a 4-byte start code's first, trailing_zero_8bits) not.
    Bytes before the first start code are not a unit."""
    spans = []
    at = data.find(START_CODE)
    while at != -1:
        start = at + len(START_CODE)
        at = data.find(START_CODE, start)
        end = len(data) if at == -1 else at
        while end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def annexb_units(data: bytes) -> list[bytes]:
    """The NAL units of Annex-B `data` (see annexb_spans)."""
    return [data[start:end] for start, end in annexb_spans(data)]


def annexb(units: Iterable[bytes]) -> bytes:
    """NAL units joined as Annex-B, each after a 4-byte start code (as FFmpeg's extradata)."""
    return b"".join(LONG_START_CODE + unit for unit in units)


def length_prefixed_units(data: bytes, whole: int) -> list[bytes] | None:
    """NAL units with 4-byte big-endian lengths (MP4's layout) when the lengths add up to
    `whole` bytes (`data` may be only the first bytes of them); None when they do not."""
    units, at = [], 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if size == 0 or at + 4 + size > whole:
            return None
        units.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return units if units and (at == whole or at >= len(data)) else None


def nal_units(data: bytes, whole: int | None = None) -> list[bytes]:
    """NAL units of an access unit (`data` may be only its first bytes; `whole` is its size):
    length-prefixed as in MP4 when the lengths add up, else Annex B (start codes, as from
    RTSP), else none. A 4-byte length such as 00 00 01 1b looks like a start code: the
    lengths decide."""
    prefixed = length_prefixed_units(data, len(data) if whole is None else whole)
    if prefixed is not None:
        return prefixed
    if data.startswith(START_CODE) or data.startswith(LONG_START_CODE):
        return annexb_units(data)
    return []


def parameter_sets(data: bytes, codec: str) -> tuple[bytes, ...]:
    """The parameter-set NAL units at the head of an Annex-B access unit (or extradata),
    up to its first slice (H.264 SPS/PPS; H.265 VPS/SPS/PPS); () for another codec."""
    syntax = _SYNTAX.get(codec)
    if syntax is None:
        return ()
    found = []
    for start, end in annexb_spans(data):
        kind = (data[start] >> syntax.shift) & syntax.mask
        if kind in syntax.parameter_sets:
            found.append(data[start:end])
        elif kind in syntax.slices:
            break
    return tuple(found)


def starts_with_sps(head: bytes, codec: str) -> bool:
    """Whether an Annex-B packet's first NAL unit is an SPS (or, for H.265, a VPS before one)."""
    syntax = _SYNTAX.get(codec)
    at = head.find(START_CODE)
    if syntax is None or at == -1 or at + 3 >= len(head):
        return False
    return (head[at + 3] >> syntax.shift) & syntax.mask in syntax.leading


# -- bits -------------------------------------------------------------------------------


def rbsp(payload: bytes) -> bytes:
    """`payload` with its emulation prevention bytes removed (00 00 03 -> 00 00)."""
    return payload.replace(_EMULATION, b"\x00\x00") if _EMULATION in payload else payload


def escape(raw: bytes) -> bytes:
    """Emulation prevention, rbsp's inverse: 00 00 0x (x <= 3) becomes 00 00 03 0x."""
    out, zeros = bytearray(), 0
    for byte in raw:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def ue_code(value: int) -> str:
    """The unsigned Exp-Golomb code of `value`, as a string of bits."""
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


class BitReader:
    """MSB-first bits of an RBSP (emulation prevention removed); `pos` is the next bit,
    kept public so that a caller can copy spans of fields verbatim."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        """n bits as an unsigned integer."""
        if self.pos + n > len(self.data) * 8:
            raise BitstreamError("ends early")
        value = 0
        for _ in range(n):
            value = (value << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        """An unsigned Exp-Golomb code."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > MAX_GOLOMB_ZEROS:
                raise BitstreamError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """A signed Exp-Golomb code."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


# -- slice headers ----------------------------------------------------------------------

_SLICE_HEAD = 16  # bytes of a slice NAL unit enough for first_mb_in_slice and slice_type


def h264_slice_kind(data: bytes, whole: int | None = None) -> str | None:
    """'P', 'B' or 'I' (SI and SP read as I) from the first slice header of an H.264 access
    unit (`data`: the whole unit, or its first bytes with `whole` its size); None when
    there is none or it cannot be read."""
    for unit in nal_units(data, whole):
        if nal_type(unit, "h264") in (H264_SLICE, H264_IDR):
            bits = BitReader(rbsp(unit[1:_SLICE_HEAD]))
            try:
                bits.ue()  # first_mb_in_slice
                slice_type = bits.ue() % 5
            except BitstreamError:
                return None
            return "PBI"[slice_type] if slice_type < 3 else "I"
    return None


# -- sequence parameter sets ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpsInfo:
    width: int
    height: int
    refs: int  # reference frames (H.264 max_num_ref_frames; H.265 max_dec_pic_buffering - 1)

    @property
    def pictures(self) -> int:
        """Pictures a decoder keeps for this stream at least: its references and the current one."""
        return self.refs + 1


@dataclass(frozen=True, slots=True)
class H264SpsFields:
    """An H.264 SPS's fields up to its cropping, with the bit positions a rewriter needs."""

    chroma_format: int
    separate_planes: int
    refs: int
    refs_at: int  # bit where max_num_ref_frames starts
    gaps_allowed: int
    width_mbs: int
    height_units: int  # map units: macroblocks, or macroblock pairs when interlaced
    frame_mbs_only: int
    direct_8x8: int
    crop: tuple[int, int, int, int]  # left, right, top, bottom, in crop units
    tail_at: int  # bit after the cropping fields: vui_parameters_present_flag

    def size(self) -> tuple[int, int]:
        """The picture's width and height after cropping."""
        width, height = self.width_mbs * 16, self.height_units * 16 * (2 - self.frame_mbs_only)
        mono = self.chroma_format == 0 or self.separate_planes
        unit_x = 1 if mono or self.chroma_format == 3 else 2
        unit_y = (2 - self.frame_mbs_only) * (2 if not mono and self.chroma_format == 1 else 1)
        left, right, top, bottom = self.crop
        return width - unit_x * (left + right), height - unit_y * (top + bottom)


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + bits.se()) % 256
        last = nxt if nxt != 0 else last


def h264_sps_fields(raw: bytes) -> H264SpsFields:
    """Read an H.264 SPS's RBSP (after the NAL header) up to its cropping; BitstreamError if it does not parse."""
    bits = BitReader(raw)
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma, separate = 1, 0
    if profile in _HIGH_PROFILES:
        chroma = bits.ue()
        if chroma == 3:
            separate = bits.u(1)
        bits.ue(), bits.ue(), bits.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        if bits.u(1):  # seq_scaling_matrix_present
            for i in range(8 if chroma != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1), bits.se(), bits.se()
        for _ in range(bits.ue()):  # bounded: each code takes at least one bit
            bits.se()
    refs_at = bits.pos
    refs, gaps = bits.ue(), bits.u(1)
    width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field
    direct = bits.u(1)
    crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
    return H264SpsFields(
        chroma, separate, refs, refs_at, gaps, width_mbs, height_units, frame_mbs_only, direct, crop, bits.pos
    )


def _h265(bits: BitReader) -> SpsInfo:
    bits.u(4)  # sps_video_parameter_set_id
    sub_layers = bits.u(3)  # max_sub_layers_minus1
    bits.u(1)
    bits.u(88), bits.u(8)  # general profile (88 bits) and level
    present = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.u(2 * (8 - sub_layers))
    for profile, level in present:
        bits.u(88 * profile + 8 * level)
    bits.ue()  # sps_seq_parameter_set_id
    chroma = bits.ue()
    if chroma == 3:
        bits.u(1)
    width, height = bits.ue(), bits.ue()
    if bits.u(1):  # conformance_window
        unit_x, unit_y = (2 if chroma in (1, 2) else 1), (2 if chroma == 1 else 1)
        width -= unit_x * (bits.ue() + bits.ue())
        height -= unit_y * (bits.ue() + bits.ue())
    bits.ue(), bits.ue(), bits.ue()  # bit depths, log2_max_pic_order_cnt_lsb_minus4
    every_layer = bits.u(1)
    buffering = 0
    for _ in range(0 if every_layer else sub_layers, sub_layers + 1):
        buffering = max(buffering, bits.ue())  # max_dec_pic_buffering_minus1: the current one aside
        bits.ue(), bits.ue()
    return SpsInfo(width, height, buffering)


def _sps_info(nal: bytes, codec: str) -> SpsInfo | None:
    """What an SPS of `codec` claims, None when `nal` is not one; BitstreamError if it does not parse."""
    syntax = _SYNTAX.get(codec)
    if syntax is None or len(nal) <= syntax.header_bytes or nal_type(nal, codec) != syntax.sps:
        return None
    raw = rbsp(nal[syntax.header_bytes :])
    if codec == "h264":
        fields = h264_sps_fields(raw)
        return SpsInfo(*fields.size(), fields.refs)
    return _h265(BitReader(raw))


def parse_sps(nal: bytes, codec: str) -> SpsInfo | None:
    """The size and reference count an SPS NAL unit (header included) claims; None if
    it is not an SPS of `codec` ("h264" or "hevc") or does not parse."""
    try:
        info = _sps_info(nal, codec)
    except BitstreamError:
        return None
    return info if info is not None and info.width > 0 and info.height > 0 else None
