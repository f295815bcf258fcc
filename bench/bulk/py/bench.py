"""The Python contenders of `cargo xtask bench bulk`.

Indexes the shared benchmark documents (see ../README.md) with the
`helpers.streaming_bulk` (one request at a time, by design) or
`helpers.parallel_bulk` (a thread pool of --workers) of elasticsearch-py
(`--client elasticsearch`) or opensearch-py (`--client opensearch`), and prints
one `BULK-BENCH-RESULT {json}` line.

Documents are handed over pre-serialised (`"_source": "<json>"`, which the
helpers pass through untouched), as the other contenders hand over bytes: the
benchmark measures the bulk machinery, not a JSON encoder.
"""

import argparse
import json
import sys
import time
import zlib

LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
FILLER = "abcdefghijklmnopqrstuvwxyz" * 90
SIZES = {"small": 200, "large": 2048}


def doc(i, size):
    """Document i of the shared generator, exactly `size` bytes long."""
    base = (
        '{"@timestamp":%d,"level":"%s","service":"svc-%d","message":"request %d '
        'handled by worker %d in %d ms","n":%d,"pad":"'
        % (1700000000000 + i * 1000, LEVELS[i % 4], i % 7, i, i % 16, i % 997, i)
    )
    pad = max(size - len(base) - 2, 0)
    off = i % 26
    return base + FILLER[off : off + pad] + '"}'


def checksum():
    out = ["CHECKSUM"]
    for name in ("small", "large"):
        crc = 0
        for i in range(10000):
            crc = zlib.crc32((doc(i, SIZES[name]) + "\n").encode(), crc)
        out.append("%s=%08x" % (name, crc))
    print(" ".join(out), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url")
    p.add_argument("--docs", type=int, default=100000)
    p.add_argument("--doc-size", choices=sorted(SIZES), default="small")
    p.add_argument("--mode", choices=("streaming", "parallel"), default="streaming")
    p.add_argument("--client", choices=("elasticsearch", "opensearch"), default="opensearch")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--bulk-size", type=int, default=5 << 20)
    p.add_argument("--index", default="bench-bulk")
    p.add_argument("--handshake", action="store_true")
    p.add_argument("--checksum", action="store_true")
    args = p.parse_args()
    if args.checksum:
        checksum()
        return 0
    if not args.url:
        p.error("--url is required")

    if args.client == "elasticsearch":
        from elasticsearch import Elasticsearch, helpers

        def connect():
            return Elasticsearch(
                args.url, request_timeout=120, connections_per_node=max(args.workers * 2, 10)
            )

    else:
        from opensearchpy import OpenSearch, helpers

        def connect():
            return OpenSearch(
                hosts=[args.url], timeout=120, pool_maxsize=max(args.workers * 2, 10)
            )

    size = SIZES[args.doc_size]
    index = args.index
    if args.handshake:
        print("BULK-BENCH-READY", flush=True)
        sys.stdin.readline()
    started = time.perf_counter()

    client = connect()
    actions = ({"_index": index, "_id": str(i), "_source": doc(i, size)} for i in range(args.docs))
    common = dict(
        chunk_size=args.batch,
        max_chunk_bytes=args.bulk_size,
        raise_on_error=False,
        raise_on_exception=False,
    )
    if args.mode == "streaming":
        results = helpers.streaming_bulk(client, actions, **common)
    else:
        results = helpers.parallel_bulk(
            client, actions, thread_count=args.workers, queue_size=args.workers, **common
        )
    ok = failed = 0
    first_error = ""
    for success, item in results:
        if success:
            ok += 1
        else:
            failed += 1
            if not first_error:
                first_error = json.dumps(item, default=str)[:300]
    elapsed = time.perf_counter() - started
    result = {
        "docs": args.docs,
        "ok": ok,
        "failed": args.docs - ok,
        "elapsed": elapsed,
        "error": first_error,
    }
    print("BULK-BENCH-RESULT " + json.dumps(result), flush=True)
    if args.handshake:
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
