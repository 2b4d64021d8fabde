#!/usr/bin/env python3
"""Where the relay's CPU goes, by pipeline stage, from a `perf record` of the relay.

    perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p PID -o relay.perf -- sleep 20
    perf script -i relay.perf --no-inline -F tid,comm,ip,sym | python3 benches/tools/stages.py EVENTS SECONDS

Each sample is given to the stage of the innermost frame of its stack that names one
(the patterns below, tried in order for each frame from the leaf up; HTTP and memory
only when no pipeline stage is on the stack); samples with no such frame are "runtime
and other" (tokio's scheduler, allocator calls from elsewhere,
the kernel outside the listed system calls). EVENTS is how many events the relay
delivered during the SECONDS the profile covered: the script prints each stage's share of
the samples, its CPU time per event in nanoseconds, and its share of the machine's cores.
"""

import os
import re
import sys

# (stage, frame pattern): the first stage whose pattern matches a frame wins for that
# frame; frames are tried from the leaf up. More specific patterns come first.
STAGES = [
    ("spool: zstd compress (group commit)", r"spool::block::encode|ZSTD_compress"),
    ("spool: zstd decompress (read)", r"spool::block::decode|ZSTD_decompress"),
    ("spool: fdatasync", r"SyncedFile::sync|fdatasync"),
    ("spool: sled (insert, flush, get, remove)", r"\bsled::"),
    ("ship: gzip (zlib-rs level 1 + crc32)", r"ship::gzip::encode|zlib_rs|crc32fast"),
    ("ship: encode (parse, transform, HEC line)", r"ship::hec|ship::transform|ship::json|simd_json|Encoded::encode|ship::sentinel::record"),
    ("source: WebSocket read and classify", r"source::zoom_ws|source::frame|fastwebsockets"),
    ("spool: writer queue and group", r"spool::writer"),
    ("ship: batching and bookkeeping", r"ship::shipper|ship::batch|spool::Spool::(read_block|ack|pending)"),
    ("HTTP and TLS (hyper, rustls, sockets)", r"\bhyper::|\bh2::|rustls|tcp_sendmsg|tcp_recvmsg|sock_sendmsg|sock_recvmsg"),
    ("memory (malloc, free, page faults)", r"\bmalloc|\bfree\b|cfree|_int_malloc|_int_free|__memcpy|__memmove|memcpy|asm_exc_page_fault|clear_page"),
]
COMPILED = [(name, re.compile(p)) for name, p in STAGES]
OTHER = "runtime and other"


def stage_of(frames):
    # A stage of the pipeline anywhere in the stack wins (a memcpy or malloc inside the
    # encoder is the encoder's cost); memory and HTTP work outside any stage come next.
    for pats in (COMPILED[:-2], COMPILED[-2:]):
        for sym in frames:
            for name, pat in pats:
                if pat.search(sym):
                    return name
    return OTHER


def samples(lines):
    """Yields the frames (leaf first) of each sample in `perf script` output."""
    frames = []
    in_sample = False
    for line in lines:
        if not line.strip():
            if in_sample:
                yield frames
            frames, in_sample = [], False
            continue
        # A sample's header (its thread id, right-aligned) is followed by its frames,
        # one per line, each indented with a tab.
        if not line.startswith("\t"):
            in_sample = True
            continue
        parts = line.split(None, 1)
        if len(parts) == 2:
            frames.append(parts[1].strip())
    if in_sample:
        yield frames


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    events, seconds = float(sys.argv[1]), float(sys.argv[2])
    counts = {}
    total = 0
    for frames in samples(sys.stdin):
        s = stage_of(frames)
        counts[s] = counts.get(s, 0) + 1
        total += 1
    if total == 0:
        sys.exit("no samples on stdin")
    cores = os.cpu_count() or 1
    # cpu-clock samples at a fixed rate per running thread: samples / rate = CPU seconds.
    rate = float(os.environ.get("PERF_FREQ", "999"))
    cpu_seconds = total / rate
    print(f"{total} samples, {cpu_seconds:.1f} CPU s over {seconds:.1f} s "
          f"({cpu_seconds / seconds:.2f} of {cores} cores), {events:.0f} events "
          f"({events / seconds:,.0f} events/s)")
    print()
    print(f"| stage | share of the relay's CPU | ns per event | cores at {events / seconds:,.0f} events/s |")
    print("|---|---|---|---|")
    order = [n for n, _ in STAGES] + [OTHER]
    for name in sorted(order, key=lambda n: -counts.get(n, 0)):
        c = counts.get(name, 0)
        if c == 0:
            continue
        cpu = c / rate
        print(f"| {name} | {100 * c / total:.1f}% | {1e9 * cpu / events:,.0f} | {cpu / seconds:.2f} |")
    print(f"| **total** | 100% | {1e9 * cpu_seconds / events:,.0f} | {cpu_seconds / seconds:.2f} |")


if __name__ == "__main__":
    main()
