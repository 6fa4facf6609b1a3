#!/usr/bin/env python3
"""Synthetic DICOM corpus for tests/bench/ingest.sh (and the ingest tests).

Writes Part 10 files (Explicit VR Little Endian, correct meta header) directly,
without DCMTK, so 210 MB of CT is made in seconds:
  ct/    400 CT slices, 512x512, 16-bit       (~210 MB, one series)
  mr/    200 MR images, 128x128, 16-bit       (small)
  mf/      3 US multi-frame objects, ~50 MB each
Usage: gen_corpus.py OUT_DIR [--ct N] [--mr N] [--mf N] [--mf-mb MB]
Pixel data is pseudo-random (seeded, reproducible), so nothing compresses it away.
"""
import argparse
import os
import random
import struct

ROOT = "1.2.826.0.1.3680043.10.1137.77"
LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"}


def _pad(vr, value):
    if isinstance(value, str):
        value = value.encode("ascii")
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    return value


def element(group, elem, vr, value):
    vr = vr.encode()
    value = _pad(vr, value)
    head = struct.pack("<HH", group, elem) + vr
    if vr in LONG_VRS:
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def us(v):
    return struct.pack("<H", v)


def write_image(path, sop_class, sop, study, series, modality, rows, cols, bits, frames, seed,
                patient=("Bench^Patient", "BENCH-1")):
    meta_body = b"".join([
        element(0x0002, 0x0001, "OB", b"\0\1"),
        element(0x0002, 0x0002, "UI", sop_class),
        element(0x0002, 0x0003, "UI", sop),
        element(0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1"),
        element(0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.10.1137.77.0"),
        element(0x0002, 0x0013, "SH", "PHIBENCH"),
    ])
    meta = element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta_body))) + meta_body
    n = rows * cols * frames * (bits // 8)
    pixels = random.Random(seed).randbytes(n)
    if bits == 16:  # keep values within 12 bits stored
        pixels = bytes(b & 0x0F if i % 2 else b for i, b in enumerate(pixels)) if n < 65536 \
            else _mask12(pixels)
    ds = [
        element(0x0008, 0x0005, "CS", "ISO_IR 192"),
        element(0x0008, 0x0016, "UI", sop_class),
        element(0x0008, 0x0018, "UI", sop),
        element(0x0008, 0x0020, "DA", "20240131"),
        element(0x0008, 0x0050, "SH", "ACC" + patient[1]),
        element(0x0008, 0x0060, "CS", modality),
        element(0x0010, 0x0010, "PN", patient[0]),
        element(0x0010, 0x0020, "LO", patient[1]),
        element(0x0020, 0x000D, "UI", study),
        element(0x0020, 0x000E, "UI", series),
        element(0x0020, 0x0013, "IS", str(seed % 100000)),
        element(0x0028, 0x0002, "US", us(1)),
        element(0x0028, 0x0004, "CS", "MONOCHROME2"),
    ]
    if frames > 1:
        ds.append(element(0x0028, 0x0008, "IS", str(frames)))
    ds += [
        element(0x0028, 0x0010, "US", us(rows)),
        element(0x0028, 0x0011, "US", us(cols)),
        element(0x0028, 0x0100, "US", us(bits)),
        element(0x0028, 0x0101, "US", us(12 if bits == 16 else 8)),
        element(0x0028, 0x0102, "US", us(11 if bits == 16 else 7)),
        element(0x0028, 0x0103, "US", us(0)),
        element(0x7FE0, 0x0010, "OW" if bits == 16 else "OB", pixels),
    ]
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + meta + b"".join(ds))


def _mask12(pixels):
    # Fast 12-bit mask of little-endian words via int arithmetic on big chunks.
    mask = bytes([0xFF, 0x0F]) * 4096
    out = bytearray(len(pixels))
    for off in range(0, len(pixels), len(mask)):
        chunk = pixels[off:off + len(mask)]
        m = int.from_bytes(chunk, "little") & int.from_bytes(mask[:len(chunk)], "little")
        out[off:off + len(chunk)] = m.to_bytes(len(chunk), "little")
    return bytes(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--ct", type=int, default=400)
    p.add_argument("--mr", type=int, default=200)
    p.add_argument("--mf", type=int, default=3)
    p.add_argument("--mf-mb", type=int, default=50)
    a = p.parse_args()
    for sub in ("ct", "mr", "mf"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    study = ROOT + ".1"
    for i in range(a.ct):
        write_image(os.path.join(a.out, "ct", "%04d.dcm" % i), "1.2.840.10008.5.1.4.1.1.2",
                    "%s.1.1.%d" % (ROOT, i), study, ROOT + ".1.1", "CT", 512, 512, 16, 1, i)
    for i in range(a.mr):
        write_image(os.path.join(a.out, "mr", "%04d.dcm" % i), "1.2.840.10008.5.1.4.1.1.4",
                    "%s.1.2.%d" % (ROOT, i), study, ROOT + ".1.2", "MR", 128, 128, 16, 1,
                    10000 + i)
    frames = max(1, a.mf_mb * 1000 * 1000 // (640 * 480))
    for i in range(a.mf):
        write_image(os.path.join(a.out, "mf", "%04d.dcm" % i), "1.2.840.10008.5.1.4.1.1.3.1",
                    "%s.1.3.%d" % (ROOT, i), study, ROOT + ".1.3", "US", 480, 640, 8, frames,
                    20000 + i)


if __name__ == "__main__":
    main()
