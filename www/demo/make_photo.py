"""Writes the demo's image: a PNG of colour bands with grain, about 2 MB.

Made at `just serve` rather than kept in the repository. Standard library
only (zlib for the PNG's IDAT).
"""
import random
import struct
import sys
import zlib

WIDTH, HEIGHT = 1024, 768


def chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def main(path: str) -> None:
    rng = random.Random(7)
    rows = bytearray()
    for y in range(HEIGHT):
        rows.append(0)  # filter: none
        for x in range(WIDTH):
            grain = rng.randrange(48)
            rows += bytes(((x * 255 // WIDTH + grain) % 256,
                           (y * 255 // HEIGHT + grain) % 256,
                           ((x + y) * 255 // (WIDTH + HEIGHT) + grain) % 256))
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    main(sys.argv[1])
