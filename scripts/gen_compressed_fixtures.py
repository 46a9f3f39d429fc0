"""Compressed fixtures for issue 15 (zstd, ZIP, Snappy framing, Hadoop Snappy), called by
scripts/gen_fixtures.py: the same 300 application-log records as `app-logs.ndjson.gz`, packed
by the reference tools (Debian's `zstd`/`pzstd` and `zip`, python-snappy), plus a truncated or
corrupt version of each format whose expected counts do not depend on the decoder.

Needs: `apt-get install zstd zip` and `pip install -r scripts/fixtures-requirements.txt`.

Each fixture's manifest entry is derived from the bytes of the file itself (decoded with these
reference decoders and walked with the small format parsers below), never from what the
generator meant to write. A committed file is kept as long as it still verifies (decodes to the
intended records with the intended structure), so re-running with another tool version, or for
the ZIP whose ZipCrypto header is random, does not churn the repository.
"""

from __future__ import annotations

import os
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

from compressed_formats import (HADOOP_BUFFER, INVALID_SNAPPY, STREAM_ID, HadoopWriter, _snappy, hadoop_decode,
                                hadoop_walk, masked_crc32c, run, sz_chunk, sz_decode, sz_reference, sz_walk,
                                zip_cli, zip_python, zip_read, zip_streamed, zip_walk, zstd_cli, zstd_decode,
                                zstd_walk)

PARTS = 3  # the 300 records as three parts of 100 (frames, entries)


def tool_versions() -> dict:
    """The reference tools, or a clear error naming what to install."""
    missing = [t for t in ("zstd", "pzstd", "zip") if subprocess.run(["which", t], capture_output=True).returncode]
    try:
        import importlib.metadata as md

        snappy_version = md.version("python-snappy")
        _snappy()
    except Exception:
        snappy_version = None
        missing.append("python-snappy (pip install -r scripts/fixtures-requirements.txt)")
    if missing:
        raise SystemExit("compressed fixtures need: " + ", ".join(missing) +
                         " (Debian: apt-get install zstd zip); or pass --skip-compressed")
    return {"zstd": run(["zstd", "--version"]).decode().split(",")[0].split()[-1],
            "zip": run(["zip", "-v"]).decode().splitlines()[1].split()[3],
            "python-snappy": snappy_version}


def parts_of(plain: bytes, n: int = PARTS) -> list[bytes]:
    lines = plain.splitlines(keepends=True)
    k = len(lines) // n
    return [b"".join(lines[i * k:(i + 1) * k if i < n - 1 else len(lines)]) for i in range(n)]


def complete_records(prefix: bytes) -> int:
    return prefix.count(b"\n")


def margin_ok(plain: bytes, produced: int, margin: int = 24) -> bool:
    """The decoded prefix ends well inside a record, so every decoder agrees on the count."""
    prev = plain.rfind(b"\n", 0, produced)
    nxt = plain.find(b"\n", produced)
    return produced - prev > margin and (nxt == -1 or nxt - produced > margin)


# ------------------------------------------------------------------ the fixtures


@dataclass
class Fixture:
    name: str
    make: Callable[[], bytes]
    describe: Callable[[bytes], dict]  # manifest entry from the actual bytes; raises if they are wrong


def _good(plain: bytes, decoded: bytes, ok: bool, what: str) -> None:
    if not ok or decoded != plain:
        raise ValueError(f"{what}: does not decode to the {complete_records(plain)} records")


def _context(plain: bytes, by_day: dict) -> SimpleNamespace:
    n = complete_records(plain)
    common = {"records": n, "timestamp_field": "timestamp (epoch ms number)", "same_records_as": "app-logs.ndjson.gz"}
    return SimpleNamespace(plain=plain, parts=parts_of(plain), n=n, common=common,
                           whole=lambda entry: {**entry, **common, "indexed": n, "dead_letter": 0, "by_utc_date": by_day})


def zstd_fixtures(c: SimpleNamespace) -> list[Fixture]:
    plain, parts, common, whole = c.plain, c.parts, c.common, c.whole

    def zst_multi():
        return b"".join(zstd_cli(p) for p in parts)

    def zst_multi_describe(b):
        _good(plain, *zstd_decode(b), "zstd")
        frames = zstd_walk(b)
        if [k for k, *_ in frames] != ["frame"] * PARTS:
            raise ValueError("expected 3 zstd frames")
        return whole({"format": "ndjson", "compression": "zstd, 3 frames (zstd CLI per part, concatenated)",
                      "zstd_frames": len(frames),
                      "exercises": "multi-frame zstd: a decoder that stops after the first frame keeps 100"})

    def zst_pzstd_describe(b):
        _good(plain, *zstd_decode(b), "pzstd")
        kinds = [k for k, *_ in zstd_walk(b)]
        if kinds[0] != "skippable" or "frame" not in kinds:
            raise ValueError("pzstd output should start with a skippable frame")
        return whole({"format": "ndjson", "compression": "zstd written by pzstd: skippable frames before each frame",
                      "zstd_frames": kinds.count("frame"), "zstd_skippable_frames": kinds.count("skippable"),
                      "starts_with": b[:4].hex(),
                      "exercises": "detection by magic must accept the skippable-frame magic 0x184D2A5?, "
                                   "and the decoder must skip those frames"})

    def zst_truncated():
        good = zst_multi()
        _, off, length = zstd_walk(good)[1]
        return good[:off + length // 2]

    def zst_truncated_describe(b):
        out, ok = zstd_decode(b)
        if ok or out != parts[0]:
            raise ValueError("truncated zstd should decode to frame 1 only, then fail")
        return {"format": "ndjson", "compression": "zstd, cut in the middle of frame 2 (of 3)", **common,
                "complete_records_before_cut": complete_records(out), "indexed": complete_records(out),
                "dead_letter": 1, "exercises": "unexpected end of a zstd frame: frame 1's records kept, one "
                "dead-letter entry for the rest (the cut block yields no output in any decoder)"}

    def zst_corrupt():
        good = bytearray(zst_multi())
        _, off, _ = zstd_walk(bytes(good))[1]
        good[off:off + 4] = b"\x00\x00\x00\x00"
        return bytes(good)

    def zst_corrupt_describe(b):
        out, ok = zstd_decode(b)
        if ok or out != parts[0]:
            raise ValueError("corrupt zstd should decode to frame 1 only, then fail")
        return {"format": "ndjson", "compression": "zstd, frame 2's magic number zeroed", **common,
                "indexed": complete_records(out), "dead_letter": 1,
                "exercises": "garbage after a valid frame is an error, not a silent end of object "
                             "(a decoder that ignores trailing data loses 200 records without a trace)"}

    def misnamed_describe(b):
        entry = zst_multi_describe(b)
        entry.update(compression="zstd (3 frames) under a .json name",
                     exercises="the format is found from the magic bytes, never from the key suffix")
        return entry

    return [
        Fixture("app-logs.ndjson.zst", zst_multi, zst_multi_describe),
        Fixture("app-logs.pzstd.ndjson.zst", lambda: zstd_cli(plain, "pzstd"), zst_pzstd_describe),
        Fixture("truncated.ndjson.zst", zst_truncated, zst_truncated_describe),
        Fixture("corrupt.ndjson.zst", zst_corrupt, zst_corrupt_describe),
        Fixture("misnamed-zstd.json", zst_multi, misnamed_describe),
    ]


def zip_fixtures(c: SimpleNamespace) -> list[Fixture]:
    plain, parts, n, common, whole = c.plain, c.parts, c.n, c.common, c.whole
    zip_entries = [("part-1.ndjson", parts[0], []), ("logs/", None, []), ("logs/part-2.json", parts[1], ["-n", ".json"]),
                   ("part-3.ndjson", parts[2], [])]

    def zip_good_describe(b):
        walk = zip_walk(b)
        names = [e["name"] for e in walk]
        if names != ["part-1.ndjson", "logs/", "logs/part-2.json", "part-3.ndjson"]:
            raise ValueError(f"unexpected entries {names}")
        if b"".join(zip_read(b, e["name"]) for e in walk if not e["dir"]) != plain:
            raise ValueError("zip entries do not hold the records")
        return whole({"format": "ndjson in each entry", "compression": "ZIP (Info-ZIP zip -X), 4 entries",
                      "zip_entries": [{k: e[k] for k in ("name", "method", "size")} for e in walk],
                      "exercises": "entries in order, each an object part: deflated, a directory entry (no "
                                   "records), a stored entry (method 0), deflated"})

    def zip_streamed_describe(b):
        walk = zip_walk(b)
        if not all(e["data_descriptor"] and not e["local_sizes"] for e in walk):
            raise ValueError("streamed zip should use data descriptors with zero local sizes")
        if b"".join(zip_read(b, e["name"]) for e in walk) != plain:
            raise ValueError("streamed zip entries do not hold the records")
        return whole({"format": "ndjson in each entry", "compression": "ZIP written to a pipe (zip -X - …)",
                      "zip_entries": [{k: e[k] for k in ("name", "method", "size", "flags")} for e in walk],
                      "exercises": "general-purpose bit 3: sizes are 0 in the local headers and follow each "
                                   "entry's deflate data in a data descriptor; a streaming reader must end "
                                   "each entry at the end of its deflate stream"})

    def zip_encrypted():
        return zip_cli([("part-1.ndjson", parts[0], []), ("secret.ndjson", parts[1], ["-P", "f4a-fixture"]),
                        ("part-3.ndjson", parts[2], [])])

    def zip_encrypted_describe(b):
        walk = zip_walk(b)
        if [(e["name"], e["encrypted"]) for e in walk] != [("part-1.ndjson", False), ("secret.ndjson", True),
                                                            ("part-3.ndjson", False)]:
            raise ValueError("unexpected entries")
        if zip_read(b, "secret.ndjson", b"f4a-fixture") != parts[1] or zip_read(b, "part-3.ndjson") != parts[2]:
            raise ValueError("encrypted zip content differs")
        sec = walk[1]
        return {"format": "ndjson in each entry", "compression": "ZIP with one ZipCrypto-encrypted entry "
                "(zip -P; password f4a-fixture)", **common, "indexed": 2 * len(parts[0].splitlines()),
                "dead_letter": 1, "zip_entries": [{k: e[k] for k in ("name", "method", "flags", "encrypted")}
                                                  for e in walk],
                "encrypted_entry_local_header_has_sizes": sec["local_sizes"],
                "exercises": "an encrypted entry is one dead-letter entry naming the reason; the entries "
                             "around it are indexed. Info-ZIP sets bit 3 on the encrypted entry but still "
                             "writes its sizes in the local header, so a streaming reader can skip it"}

    def zip_methods():
        return zip_python([("part-1.ndjson", parts[0], zipfile.ZIP_DEFLATED),
                           ("part-2a.ndjson", parts[1][:len(parts[1]) // 2], zipfile.ZIP_BZIP2),
                           ("part-2b.ndjson", parts[1][len(parts[1]) // 2:], zipfile.ZIP_LZMA),
                           ("part-3.ndjson", parts[2], zipfile.ZIP_DEFLATED)])

    def zip_methods_describe(b):
        walk = zip_walk(b)
        if [e["method"] for e in walk] != [8, 12, 14, 8]:
            raise ValueError("expected methods deflate, bzip2, lzma, deflate")
        if b"".join(zip_read(b, e["name"]) for e in walk) != plain:
            raise ValueError("entries do not hold the records")
        return {"format": "ndjson in each entry", "compression": "ZIP (Python zipfile): deflate, bzip2 (12), "
                "LZMA (14), deflate", **common, "indexed": 2 * len(parts[0].splitlines()), "dead_letter": 2,
                "indexed_if_bzip2_and_lzma_supported": n,
                "zip_entries": [{k: e[k] for k in ("name", "method", "size")} for e in walk],
                "exercises": "entries with methods the worker does not decode (assumed: it decodes stored "
                             "and deflate only, which is what Firehose writes) are one dead-letter entry "
                             "each, skipped by their local-header size; the deflated entries are indexed"}

    def zip_truncated():
        good = zip_cli(zip_entries)
        last = zip_walk(good)[-1]
        for cut in range(last["data_offset"] + last["compressed_size"] // 2, last["data_offset"] + last["compressed_size"]):
            produced = len(zlib.decompressobj(-15).decompress(good[last["data_offset"]:cut]))
            if margin_ok(parts[2], produced):
                return good[:cut]
        raise RuntimeError("no cut point")

    def zip_truncated_describe(b):
        # Walk the local headers as a streaming reader does, up to the entry that is cut.
        pos, name, produced = 0, None, b""
        while b[pos:pos + 4] == b"PK\x03\x04":
            _, _, _, _, _, csize, _, nlen, xlen = struct.unpack_from("<HHHHIIIHH", b, pos + 6)
            name, start = b[pos + 30:pos + 30 + nlen].decode(), pos + 30 + nlen + xlen
            if start + csize > len(b):
                produced = zlib.decompressobj(-15).decompress(b[start:])
                break
            pos = start + csize
        if name != "part-3.ndjson" or not parts[2].startswith(produced) or not margin_ok(parts[2], len(produced)):
            raise ValueError("truncated zip is not cut well inside part-3.ndjson")
        indexed = len(parts[0].splitlines()) + len(parts[1].splitlines()) + complete_records(produced)
        return {"format": "ndjson in each entry", "compression": "ZIP cut in the middle of the last entry's "
                "deflate data (no central directory)", **common, "indexed": indexed, "dead_letter": 1,
                "complete_records_before_cut": indexed,
                "exercises": "a streaming ZIP reader keeps the complete entries and the complete records of "
                             "the cut one; a reader that needs the central directory loses everything"}

    return [
        Fixture("app-logs.zip", lambda: zip_cli(zip_entries), zip_good_describe),
        Fixture("app-logs-streamed.zip", lambda: zip_streamed([(f"part-{i + 1}.ndjson", p) for i, p in enumerate(parts)]),
                zip_streamed_describe),
        Fixture("encrypted-entry.zip", zip_encrypted, zip_encrypted_describe),
        Fixture("unsupported-methods.zip", zip_methods, zip_methods_describe),
        Fixture("truncated.zip", zip_truncated, zip_truncated_describe),
    ]


def snappy_framed_fixtures(c: SimpleNamespace) -> list[Fixture]:
    plain, parts, common, whole = c.plain, c.parts, c.common, c.whole

    def sz_good_describe(b):
        _good(plain, *sz_decode(b), "snappy framing")
        if bytes(_snappy().StreamDecompressor().decompress(b)) != plain:
            raise ValueError("python-snappy does not decode it")
        chunks = sz_walk(b)
        return whole({"format": "ndjson", "compression": "Snappy framing format (python-snappy stream_compress)",
                      "snappy_chunks": [f"0x{k:02x}" for k, *_ in chunks],
                      "exercises": "stream identifier + compressed chunks of <= 64 KiB with masked CRC-32C"})

    def sz_concat():
        out = []
        for part in parts:  # one framed stream per part, as `cat a.sz b.sz` gives
            out.append(STREAM_ID)
            half = len(part) // 2
            c = _snappy().compress(part[:half])
            out.append(sz_chunk(0x00, struct.pack("<I", masked_crc32c(part[:half])) + c))
            out.append(sz_chunk(0x01, struct.pack("<I", masked_crc32c(part[half:])) + part[half:]))
            out.append(sz_chunk(0xFE, b"\x00" * 7))  # padding
        out.insert(3, sz_chunk(0x80, b"reserved skippable chunk"))
        return b"".join(out)

    def sz_concat_describe(b):
        _good(plain, *sz_decode(b), "snappy framing (concatenated)")
        kinds = [f"0x{k:02x}" for k, *_ in sz_walk(b)]
        if kinds.count("0xff") != PARTS or "0x01" not in kinds or "0xfe" not in kinds or "0x80" not in kinds:
            raise ValueError(f"unexpected chunk types {kinds}")
        return whole({"format": "ndjson", "compression": "Snappy framing format: 3 concatenated streams with "
                      "uncompressed (0x01), padding (0xfe) and reserved-skippable (0x80) chunks",
                      "snappy_chunks": kinds,
                      "exercises": "every chunk type a decoder must accept or skip, and a repeated stream "
                                   "identifier (concatenated files)"})

    def sz_truncated():
        good = sz_reference(plain)
        _, off, length = sz_walk(good)[2]
        return good[:off + length // 2]

    def sz_truncated_describe(b):
        out, ok = sz_decode(b)
        if ok or not plain.startswith(out) or not out:
            raise ValueError("truncated snappy should decode its first chunk, then fail")
        return {"format": "ndjson", "compression": "Snappy framing format cut in the middle of its 2nd data chunk",
                **common, "decoded_bytes_before_cut": len(out), "complete_records_before_cut": complete_records(out),
                "indexed": complete_records(out), "dead_letter": 1,
                "exercises": "a chunk is emitted only whole (its CRC covers it), so every decoder yields the "
                             "same 64 KiB; the partial line plus the cut are one dead-letter entry"}

    def sz_badcrc():
        good = bytearray(sz_reference(plain))
        _, off, _ = sz_walk(bytes(good))[2]
        good[off + 4] ^= 0xFF  # the stored CRC of the 2nd data chunk; its data still decodes
        return bytes(good)

    def sz_badcrc_describe(b):
        out, ok = sz_decode(b)
        if ok or not out or not plain.startswith(out) or len(out) == len(plain):
            raise ValueError("bad-CRC snappy should fail at its 2nd data chunk")
        return {"format": "ndjson", "compression": "Snappy framing format, 2nd data chunk's CRC-32C flipped",
                **common, "indexed": complete_records(out), "dead_letter": 1,
                "exercises": "the chunk decompresses fine but its checksum does not match: a decoder that "
                             "skips CRC verification would index it; the worker must not"}

    return [
        Fixture("app-logs.ndjson.sz", lambda: sz_reference(plain), sz_good_describe),
        Fixture("concatenated-streams.ndjson.sz", sz_concat, sz_concat_describe),
        Fixture("truncated.ndjson.sz", sz_truncated, sz_truncated_describe),
        Fixture("bad-crc.ndjson.sz", sz_badcrc, sz_badcrc_describe),
    ]


def hadoop_snappy_fixtures(c: SimpleNamespace) -> list[Fixture]:
    plain, common, whole = c.plain, c.common, c.whole

    def hadoop_good():
        w = HadoopWriter()
        lines = plain.splitlines(keepends=True)
        for line in lines[:len(lines) // 2]:
            w.write(line)
        w.write(b"".join(lines[len(lines) // 2:]))  # one large write: one block of several sub-blocks
        return w.getvalue()

    def hadoop_good_describe(b):
        _good(plain, *hadoop_decode(b), "hadoop snappy")
        blocks = hadoop_walk(b)
        subs = [len(x["subblocks"]) for x in blocks]
        if max(subs) < 2 or min(subs) != 1:
            raise ValueError("expected single- and multi-sub-block blocks")
        return whole({"format": "ndjson", "compression": "Hadoop-compatible Snappy (BlockCompressorStream framing, "
                      f"buffer {HADOOP_BUFFER} bytes)", "hadoop_blocks": len(blocks), "hadoop_subblocks": subs,
                      "exercises": "big-endian block length + sub-blocks of big-endian compressed length + raw "
                                   "Snappy; the last block has several sub-blocks: a decoder that assumes one "
                                   "sub-block per block silently stops there (python-snappy 0.7.3's "
                                   "hadoop_stream_decompress returns 203 of the 300 records, no error). No "
                                   "magic bytes: detect by structure"})

    def hadoop_truncated():
        good = hadoop_good()
        blk = hadoop_walk(good)[3]
        off, clen = blk["subblocks"][0]
        return good[:off + 4 + clen // 2]

    def hadoop_truncated_describe(b):
        out, ok = hadoop_decode(b)
        if ok or not out or not plain.startswith(out) or not out.endswith(b"\n"):
            raise ValueError("truncated hadoop snappy should end after whole blocks")
        return {"format": "ndjson", "compression": "Hadoop Snappy cut in the middle of the first of the 3 "
                "sub-blocks of block 4 (of 4)",
                **common, "complete_records_before_cut": complete_records(out), "indexed": complete_records(out),
                "dead_letter": 1, "exercises": "blocks 1-3 end at record boundaries (whole records), block 4 "
                "yields nothing whether a decoder emits per block or per sub-block; the cut is one dead-letter entry"}

    def hadoop_corrupt():
        good = hadoop_good()
        blk = hadoop_walk(good)[2]
        off, clen = blk["subblocks"][0]
        bad = INVALID_SNAPPY
        return good[:off] + len(bad).to_bytes(4, "big") + bad + good[off + 4 + clen:]

    def hadoop_corrupt_describe(b):
        out, ok = hadoop_decode(b)
        if ok or not out or not plain.startswith(out):
            raise ValueError("corrupt hadoop snappy should fail at block 3")
        return {"format": "ndjson", "compression": "Hadoop Snappy, block 3's sub-block replaced by an invalid "
                "Snappy block (a copy before any output)", **common, "indexed": complete_records(out),
                "dead_letter": 1, "exercises": "corruption inside the data: blocks 1-2 indexed, one "
                "dead-letter entry; nothing after the damage is guessed at"}

    return [
        Fixture("app-logs.ndjson.snappy", hadoop_good, hadoop_good_describe),
        Fixture("truncated.ndjson.snappy", hadoop_truncated, hadoop_truncated_describe),
        Fixture("corrupt.ndjson.snappy", hadoop_corrupt, hadoop_corrupt_describe),
    ]


def fixtures(plain: bytes, by_day: dict) -> list[Fixture]:
    c = _context(plain, by_day)
    return zstd_fixtures(c) + zip_fixtures(c) + snappy_framed_fixtures(c) + hadoop_snappy_fixtures(c)


def build(fixtures_dir: str, plain: bytes, by_day: dict, check: bool) -> tuple[dict[str, bytes], dict, list[str]]:
    """(files to write, manifest entries, problems). A committed file that still describes cleanly
    is kept byte for byte; otherwise (or if missing) it is made anew, unless checking."""
    files, entries, problems = {}, {}, []
    for fx in fixtures(plain, by_day):
        path = os.path.join(fixtures_dir, fx.name)
        data = None
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            try:
                entries[fx.name] = fx.describe(data)
            except (ValueError, RuntimeError, zipfile.BadZipFile, struct.error, IndexError) as e:
                problems.append(f"{fx.name}: {e}")
                data = None
        elif check:
            problems.append(f"{fx.name}: missing")
        if data is None and not check:
            data = fx.make()
            entries[fx.name] = fx.describe(data)
        if data is not None:
            files[fx.name] = data
    return files, entries, problems
