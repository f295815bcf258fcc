"""Helpers of `cargo xtask bench source` (results: docs/benchmarks/source.md).

scan.py scan --url URL --index NAME --page N
    opensearch-py's helpers.scan (scroll, `size` = page) over the whole index;
    prints `SOURCE-BENCH {"docs": N, "elapsed": SECONDS}`. Needs opensearch-py
    (xtask runs it from a cached venv).

scan.py measure -- COMMAND [ARGS...]
    Runs COMMAND, waits for it with os.wait4 and prints
    `MEASURED {"status": S, "wall": SECONDS, "cpu": SECONDS, "rss_kib": KIB, "stdout": "...",
    "stderr": "..."}` (the tails of its output):
    the child's user+system CPU time (wait4) and peak RSS (its VmHWM, sampled every
    2 ms until it exits: ru_maxrss would count this launcher's pages too).
    Standard library only.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time


def arg(name):
    return sys.argv[sys.argv.index(name) + 1]


def scan():
    from opensearchpy import OpenSearch, helpers

    client = OpenSearch(arg("--url"), http_compress=False)
    page = int(arg("--page"))
    started = time.perf_counter()
    docs = 0
    for _hit in helpers.scan(
        client, index=arg("--index"), size=page, scroll="1m", query={"query": {"match_all": {}}}
    ):
        docs += 1
    elapsed = time.perf_counter() - started
    print("SOURCE-BENCH " + json.dumps({"docs": docs, "elapsed": elapsed}), flush=True)


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
    elif mode == "measure":
        measure()
    else:
        sys.exit(__doc__)
