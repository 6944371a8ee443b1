"""The exported page's one WebAssembly function, assembled here byte by byte (no toolchain needed):

    matvec(w, rows, cols, x, out):  out[r] += sum over c of W[r, c] * x[c],  r < rows

with W row-major at byte address w, x at x and out at out, all fp32 in the memory the page passes in
(env.memory), and cols a multiple of 8. It runs two f32x4 accumulators over eight columns a step:
about 9 times the plain JavaScript loop's speed for a 2x256 LSTM (docs/export.md), which is what
gets the page past 2,000 characters a second on a busy 2-core CPU. Pages fall back to the plain
loop where WebAssembly SIMD is missing. Its text form, in order: for each row, zero both
accumulators; add W[c..c+4] * x[c..c+4] into one and W[c+4..c+8] * x[c+4..c+8] into the other;
then out[r] += the sum of their eight lanes.
"""

from __future__ import annotations

import base64

W, ROWS, COLS, X, OUT, ROW, COL, XP, SUM0, SUM1 = range(10)  # parameters, then locals


def leb(n: int) -> bytes:
    """Unsigned LEB128 (also right for the small non-negative signed constants used here)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def section(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + leb(len(body)) + body


def name(text: str) -> bytes:
    return leb(len(text)) + text.encode()


def local_get(i: int) -> bytes:
    return bytes([0x20, i])


def local_set(i: int) -> bytes:
    return bytes([0x21, i])


def add_const(i: int, n: int) -> bytes:
    """local i += n"""
    return local_get(i) + bytes([0x41]) + leb(n) + b"\x6a" + local_set(i)


V128_ZERO = b"\xfd\x0c" + bytes(16)
F32X4_MUL, F32X4_ADD = b"\xfd\xe6\x01", b"\xfd\xe4\x01"
BLOCK, LOOP, END = b"\x02\x40", b"\x03\x40", b"\x0b"


def load(offset: int) -> bytes:
    return b"\xfd\x00\x02" + leb(offset)  # v128.load, 4-byte alignment


def lane(k: int) -> bytes:
    return b"\xfd\x1f" + bytes([k]) + b"\x92"  # f32x4.extract_lane k, f32.add


def accumulate(into: int, offset: int) -> bytes:
    """into += load(w + offset) * load(xp + offset)"""
    return (
        local_get(into)
        + local_get(W)
        + load(offset)
        + local_get(XP)
        + load(offset)
        + F32X4_MUL
        + F32X4_ADD
        + local_set(into)
    )


def matvec_module() -> bytes:
    rows_loop = b"".join(
        [
            local_get(ROW) + local_get(ROWS) + b"\x4f\x0d\x01",  # row >= rows: done
            V128_ZERO + local_set(SUM0) + V128_ZERO + local_set(SUM1),
            local_get(X) + local_set(XP) + b"\x41\x00" + local_set(COL),
            LOOP,
            accumulate(SUM0, 0) + accumulate(SUM1, 16),
            add_const(W, 32) + add_const(XP, 32),
            local_get(COL)
            + b"\x41\x08\x6a\x22"
            + bytes([COL])
            + local_get(COLS)
            + b"\x49\x0d\x00",  # (col += 8) < cols: again
            END,
            local_get(OUT) + local_get(OUT) + b"\x2a\x02\x00",  # out address, *out
            local_get(SUM0) + local_get(SUM1) + F32X4_ADD + local_set(SUM0),
            b"".join(local_get(SUM0) + lane(k) for k in range(4)),
            b"\x38\x02\x00",  # f32.store
            add_const(OUT, 4) + add_const(ROW, 1),
            b"\x0c\x00",  # next row
        ]
    )
    body = b"\x02\x03\x7f\x02\x7b" + BLOCK + LOOP + rows_loop + END + END + END  # locals: 3 i32, 2 v128
    return (
        b"\x00asm\x01\x00\x00\x00"
        + section(1, b"\x01\x60\x05" + b"\x7f" * 5 + b"\x00")  # type: (i32 x 5) -> ()
        + section(2, b"\x01" + name("env") + name("memory") + b"\x02\x00\x01")  # import env.memory
        + section(3, b"\x01\x00")
        + section(7, b"\x01" + name("matvec") + b"\x00\x00")
        + section(10, b"\x01" + leb(len(body)) + body)
    )


def matvec_base64() -> str:
    return base64.b64encode(matvec_module()).decode("ascii")
