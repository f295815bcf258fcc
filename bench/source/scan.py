"""Helpers of `cargo xtask bench source` (results: docs/benchmarks/source.md).

scan.py scan --client es|os --url URL --index NAME --page N
    The official Python client's helpers.scan (scroll, `size` = page, index
    order) over the whole index: elasticsearch-py (`es`) or opensearch-py (`os`).
    Prints `SOURCE-BENCH {"docs": N, "elapsed": SECONDS}`.

scan.py pit --client es|os --url URL --index NAME --page N
    A point in time + `search_after` loop written with the official client, sorted
    like the connector (`@timestamp`, then `id`): Elasticsearch's
    `open_point_in_time`/`close_point_in_time`, OpenSearch's `create_pit`/`delete_pit`.
    Prints the same line.

scan.py version --client es|os
    Prints the installed client's version.

scan.py measure -- COMMAND [ARGS...]
    Runs COMMAND, waits for it with os.wait4 and prints
    `MEASURED {"status": S, "wall": SECONDS, "cpu": SECONDS, "rss_kib": KIB, "stdout": "...",
    "stderr": "..."}` (the tails of its output):
    the child's user+system CPU time (wait4) and peak RSS (its VmHWM, sampled every
    2 ms until it exits: ru_maxrss would count this launcher's pages too).
    Standard library only.

xtask runs `scan` and `pit` from a cached venv per client.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

KEEP_ALIVE = "1m"
SORT = [{"@timestamp": {"order": "asc"}}, {"id": {"order": "asc"}}]


def arg(name):
    return sys.argv[sys.argv.index(name) + 1]


def client():
    if arg("--client") == "es":
        from elasticsearch import Elasticsearch

        return Elasticsearch(arg("--url"), http_compress=False)
    from opensearchpy import OpenSearch

    return OpenSearch(arg("--url"), http_compress=False)


def helpers():
    if arg("--client") == "es":
        from elasticsearch import helpers

        return helpers
    from opensearchpy import helpers

    return helpers


def report(docs, elapsed):
    print("SOURCE-BENCH " + json.dumps({"docs": docs, "elapsed": elapsed}), flush=True)


def scan():
    es, scanner = client(), helpers()
    page = int(arg("--page"))
    started = time.perf_counter()
    docs = 0
    for _hit in scanner.scan(
        es, index=arg("--index"), size=page, scroll=KEEP_ALIVE, query={"query": {"match_all": {}}}
    ):
        docs += 1
    report(docs, time.perf_counter() - started)


def pit():
    es = client()
    page = int(arg("--page"))
    index = arg("--index")
    elasticsearch = arg("--client") == "es"
    started = time.perf_counter()
    if elasticsearch:
        pit_id = es.open_point_in_time(index=index, keep_alive=KEEP_ALIVE)["id"]
    else:
        pit_id = es.create_pit(index=index, params={"keep_alive": KEEP_ALIVE})["pit_id"]
    docs = 0
    after = None
    while True:
        body = {
            "size": page,
            "sort": SORT,
            "track_total_hits": False,
            "pit": {"id": pit_id, "keep_alive": KEEP_ALIVE},
        }
        if after is not None:
            body["search_after"] = after
        answer = es.search(body=body)
        hits = answer["hits"]["hits"]
        if not hits:
            break
        docs += len(hits)
        pit_id = answer.get("pit_id", pit_id)
        after = hits[-1]["sort"]
    if elasticsearch:
        es.close_point_in_time(id=pit_id)
    else:
        es.delete_pit(body={"pit_id": [pit_id]})
    report(docs, time.perf_counter() - started)


def version():
    from importlib.metadata import version as installed

    print(installed("elasticsearch" if arg("--client") == "es" else "opensearch-py"))


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure():
    command = sys.argv[sys.argv.index("--") + 1 :]
    errors = tempfile.TemporaryFile()
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(child.stdout.read()))
    reader.start()
    # ru_maxrss would include this launcher's own pages (inherited through fork and
    # exec), so the peak RSS is the child's VmHWM, sampled until it exits.
    rss_kib = 0
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        rss_kib = max(rss_kib, vm_hwm_kib(child.pid))
        time.sleep(0.002)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    errors.seek(0)
    err = errors.read()
    out = b"".join(chunks)
    result = {
        "status": child.returncode,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_kib": rss_kib,
        "stdout": out.decode("utf-8", "replace")[-2000:],
        "stderr": err.decode("utf-8", "replace")[-2000:],
    }
    print("MEASURED " + json.dumps(result), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "scan":
        scan()
    elif mode == "pit":
        pit()
    elif mode == "version":
        version()
    elif mode == "measure":
        measure()
    else:
        sys.exit(__doc__)
