"""The compression formats of the issue-15 fixtures: thin wrappers around the reference tools
(Debian's `zstd`/`pzstd` and `zip`, Python's zipfile, python-snappy) and small independent
parsers and decoders (zstd frames, ZIP local headers, Snappy framing chunks with CRC-32C, Hadoop
Snappy blocks) that scripts/gen_compressed_fixtures.py uses to describe each file from its bytes.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import zipfile

ZIP_TIME = (2026, 11, 24, 20, 0, 0)
ZIP_EPOCH = 1795550400  # 2026-11-24T20:00:00Z, with TZ=UTC for the zip CLI
HADOOP_BUFFER = 16 * 1024  # io.compression.codec.snappy.buffersize for the fixture (Hadoop default: 256 KiB)


def _snappy():
    import snappy  # python-snappy (on cramjam); imported late: gen_fixtures.py stays stdlib-only

    return snappy


def run(cmd: list[str], cwd: str | None = None, check: bool = True) -> bytes:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, env={**os.environ, "TZ": "UTC"})
    if check and out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.decode(errors='replace')}")
    return out.stdout


# ------------------------------------------------------------------ zstd


def zstd_cli(data: bytes, tool: str = "zstd") -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.ndjson")
        with open(src, "wb") as f:
            f.write(data)
        args = [tool, "-q", "-3", "-c", src] if tool == "zstd" else [tool, "-q", "-p", "1", "-3", "-c", src]
        return run(args)


def zstd_decode(data: bytes) -> tuple[bytes, bool]:
    """What the reference decoder yields before any error, and whether it finished cleanly."""
    with tempfile.NamedTemporaryFile(suffix=".zst") as f:
        f.write(data)
        f.flush()
        out = subprocess.run(["zstd", "-q", "-d", "-c", f.name], capture_output=True)
    return out.stdout, out.returncode == 0


def zstd_walk(data: bytes) -> list[tuple[str, int, int]]:
    """(kind, offset, length) for each frame: 'frame' or 'skippable' (RFC 8878 section 3.1)."""
    frames, pos = [], 0
    while pos < len(data):
        magic = struct.unpack_from("<I", data, pos)[0]
        if magic & 0xFFFFFFF0 == 0x184D2A50:
            size = struct.unpack_from("<I", data, pos + 4)[0]
            frames.append(("skippable", pos, 8 + size))
            pos += 8 + size
            continue
        if magic != 0xFD2FB528:
            raise ValueError(f"no zstd frame at {pos}")
        fhd = data[pos + 4]
        single = fhd >> 5 & 1
        did = (0, 1, 2, 4)[fhd & 3]
        fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        p = pos + 5 + (0 if single else 1) + did + fcs
        while True:
            hdr = int.from_bytes(data[p:p + 3], "little")
            last, btype, bsize = hdr & 1, hdr >> 1 & 3, hdr >> 3
            p += 3 + (1 if btype == 1 else bsize)
            if last:
                break
        p += 4 if fhd >> 2 & 1 else 0
        frames.append(("frame", pos, p - pos))
        pos = p
    return frames


# ------------------------------------------------------------------ ZIP


def zip_cli(entries: list[tuple[str, bytes, list[str]]]) -> bytes:
    """Info-ZIP `zip -X` (no extra fields), fixed mtimes, TZ=UTC: one call per entry, in order."""
    with tempfile.TemporaryDirectory() as d:
        for name, content, _ in entries:  # content None: a directory entry
            path = os.path.join(d, "src", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if content is not None:
                with open(path, "wb") as f:
                    f.write(content)
        for name, _, _ in entries:  # after all writes: a file written into a directory changes its mtime
            os.utime(os.path.join(d, "src", name), (ZIP_EPOCH, ZIP_EPOCH))
        for name, _, flags in entries:
            run(["zip", "-q", "-X", *flags, os.path.join(d, "out.zip"), name], cwd=os.path.join(d, "src"))
        with open(os.path.join(d, "out.zip"), "rb") as f:
            return f.read()


def zip_streamed(entries: list[tuple[str, bytes]]) -> bytes:
    """`zip` writing to a pipe: data descriptors (bit 3) and zero sizes in every local header."""
    with tempfile.TemporaryDirectory() as d:
        for name, content in entries:
            with open(os.path.join(d, name), "wb") as f:
                f.write(content)
            os.utime(os.path.join(d, name), (ZIP_EPOCH, ZIP_EPOCH))
        out = subprocess.run(f"zip -q -X - {' '.join(n for n, _ in entries)} | cat", shell=True, cwd=d,
                             capture_output=True, env={**os.environ, "TZ": "UTC"}, check=True)
        return out.stdout


def zip_python(entries: list[tuple[str, bytes, int]]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content, method in entries:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            z.writestr(info, content)
    return buf.getvalue()


def zip_walk(data: bytes) -> list[dict]:
    """Local headers in file order (what a streaming reader sees), from the central directory."""
    import io

    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in sorted(z.infolist(), key=lambda i: i.header_offset):
            o = info.header_offset
            flags, method, _, _, crc, csize, usize, nlen, xlen = struct.unpack_from("<HHHHIIIHH", data, o + 6)
            out.append({"name": info.filename, "method": method, "flags": flags, "encrypted": bool(flags & 1),
                        "data_descriptor": bool(flags & 8),
                        "local_sizes": (csize, usize) == (info.compress_size, info.file_size),
                        "data_offset": o + 30 + nlen + xlen, "compressed_size": info.compress_size,
                        "size": info.file_size, "dir": info.filename.endswith("/")})
    return out


def zip_read(data: bytes, name: str, pwd: bytes | None = None) -> bytes:
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read(name, pwd=pwd)


# ------------------------------------------------------------------ Snappy framing format


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


STREAM_ID = b"\xff\x06\x00\x00sNaPpY"


def sz_chunk(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(3, "little") + payload


def sz_reference(plain: bytes) -> bytes:
    """python-snappy's `stream_compress` (the issue's reference tool)."""
    import io

    out = io.BytesIO()
    _snappy().stream_compress(io.BytesIO(plain), out)
    return out.getvalue()


def sz_walk(data: bytes) -> list[tuple[int, int, int]]:
    """(chunk type, offset, total length) per chunk (framing_format.txt section 3)."""
    chunks, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("truncated chunk header")
        n = int.from_bytes(data[pos + 1:pos + 4], "little")
        chunks.append((data[pos], pos, 4 + n))
        pos += 4 + n
    return chunks


def sz_decode(data: bytes) -> tuple[bytes, bool]:
    """Own decoder, CRC checked: output up to the first damaged or missing chunk."""
    out = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            return b"".join(out), False
        kind, n = data[pos], int.from_bytes(data[pos + 1:pos + 4], "little")
        body = data[pos + 4:pos + 4 + n]
        if len(body) < n:
            return b"".join(out), False
        if kind in (0x00, 0x01):
            crc = struct.unpack_from("<I", body)[0]
            try:
                chunk = _snappy().uncompress(body[4:]) if kind == 0 else body[4:]
            except Exception:
                return b"".join(out), False
            if masked_crc32c(chunk) != crc:
                return b"".join(out), False
            out.append(chunk)
        elif kind == 0xFF and body != b"sNaPpY":
            return b"".join(out), False
        elif 0x02 <= kind <= 0x7F:
            return b"".join(out), False  # reserved unskippable
        pos += 4 + n
    return b"".join(out), True


# ------------------------------------------------------------------ Hadoop Snappy


class HadoopWriter:
    """Hadoop's BlockCompressorStream + SnappyCompressor framing (hadoop-common io.compress):
    a block is a 4-byte big-endian uncompressed length, then one or more sub-blocks of a 4-byte
    big-endian compressed length and a raw Snappy block. A write larger than MAX_INPUT_SIZE
    (buffer - buffer/6 - 32) becomes one block of several sub-blocks; smaller writes accumulate
    until the next one would overflow MAX_INPUT_SIZE."""

    def __init__(self, buffer_size: int = HADOOP_BUFFER):
        self.max_input = buffer_size - (buffer_size // 6 + 32)
        self.pending = b""
        self.out: list[bytes] = []

    def _block(self, data: bytes, pieces: list[bytes]) -> None:
        self.out.append(len(data).to_bytes(4, "big"))
        for piece in pieces:
            c = _snappy().compress(piece)
            self.out.append(len(c).to_bytes(4, "big") + c)

    def write(self, data: bytes) -> None:
        if self.pending and len(self.pending) + len(data) > self.max_input:
            self.finish()
        if len(data) > self.max_input:
            self._block(data, [data[i:i + self.max_input] for i in range(0, len(data), self.max_input)])
            return
        self.pending += data

    def finish(self) -> None:
        if self.pending:
            self._block(self.pending, [self.pending])
            self.pending = b""

    def getvalue(self) -> bytes:
        self.finish()
        return b"".join(self.out)


def hadoop_walk(data: bytes) -> list[dict]:
    blocks, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("truncated block header")
        ulen = int.from_bytes(data[pos:pos + 4], "big")
        block = {"offset": pos, "size": ulen, "subblocks": []}
        pos += 4
        done = 0
        while done < ulen:
            if pos + 4 > len(data):
                raise ValueError("truncated sub-block header")
            clen = int.from_bytes(data[pos:pos + 4], "big")
            block["subblocks"].append((pos, clen))
            if pos + 4 + clen > len(data):
                raise ValueError("truncated sub-block")
            done += len(_snappy().uncompress(data[pos + 4:pos + 4 + clen]))
            pos += 4 + clen
        blocks.append(block)
    return blocks


def hadoop_decode(data: bytes) -> tuple[bytes, bool]:
    """Own decoder, block by block (a block is emitted only whole): output before any damage."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            return b"".join(out), False
        ulen = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
        block = []
        while sum(map(len, block)) < ulen:
            if pos + 4 > len(data):
                return b"".join(out), False
            clen = int.from_bytes(data[pos:pos + 4], "big")
            if pos + 4 + clen > len(data):
                return b"".join(out), False
            try:
                block.append(_snappy().uncompress(data[pos + 4:pos + 4 + clen]))
            except Exception:
                return b"".join(out), False
            pos += 4 + clen
        if sum(map(len, block)) != ulen:
            return b"".join(out), False
        out.extend(block)
    return b"".join(out), True


INVALID_SNAPPY = b"\x10\x01\x05"  # 16 bytes promised, then a copy from offset 5 before any output
