"""What an H.264 or H.265 sequence parameter set (SPS) claims: picture size and reference frames.

Read before anything is decoded, so a stream can be refused on what it claims: a
decoder allocates its pictures from these numbers (a hostile SPS claiming 15984x15984
with 8 reference frames made FFmpeg hold gigabytes). Only the fields up to the size
and the reference count are read; anything malformed reads as None (unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

# H.264 profiles whose SPS carries chroma format, bit depths and scaling matrices.
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


@dataclass(frozen=True, slots=True)
class SpsInfo:
    width: int
    height: int
    refs: int  # reference frames (H.264 max_num_ref_frames; H.265 max_dec_pic_buffering - 1)

    @property
    def pictures(self) -> int:
        """Pictures a decoder keeps for this stream at least: its references and the current one."""
        return self.refs + 1


class _Bits:
    """MSB-first bit reader over an RBSP (emulation prevention bytes already removed)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise ValueError("SPS ends early")
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def rbsp(nal: bytes) -> bytes:
    """The NAL unit's payload with emulation prevention bytes (00 00 03) removed."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + bits.se()) % 256
        last = nxt if nxt != 0 else last


def _h264(bits: _Bits) -> SpsInfo:
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
        for _ in range(bits.ue()):
            bits.se()
    refs = bits.ue()
    bits.u(1)  # gaps_in_frame_num_value_allowed
    width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field
    bits.u(1)  # direct_8x8_inference
    width, height = width_mbs * 16, height_units * 16 * (2 - frame_mbs_only)
    if bits.u(1):  # frame_cropping
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        mono = chroma == 0 or separate
        unit_x = 1 if mono or chroma == 3 else 2
        unit_y = (2 - frame_mbs_only) * (2 if not mono and chroma == 1 else 1)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    return SpsInfo(width, height, refs)


def _h265(bits: _Bits) -> SpsInfo:
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


def parse_sps(nal: bytes, codec: str) -> SpsInfo | None:
    """The size and reference count an SPS NAL unit (header included) claims; None if
    it is not an SPS of `codec` ("h264" or "hevc") or does not parse."""
    info = None
    try:
        if codec == "h264" and nal and nal[0] & 0x1F == 7:
            info = _h264(_Bits(rbsp(nal[1:])))
        elif codec == "hevc" and len(nal) > 2 and (nal[0] >> 1) & 0x3F == 33:
            info = _h265(_Bits(rbsp(nal[2:])))
    except ValueError:
        return None
    return info if info is not None and info.width > 0 and info.height > 0 else None
