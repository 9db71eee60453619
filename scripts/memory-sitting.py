#!/usr/bin/env python3
"""Resident memory of two datawall builds in one sitting, alternated round by round.

    python3 scripts/memory-sitting.py BEFORE_EXE AFTER_EXE [--rounds 2] [--json FILE]

For each build and round:
- the gateway alone, as a county runs it for many walls: `serve --scale 11 --backlog 1000000`
  with the history kept; resident memory 3 s after its model holds the million open tickets
  (read from its /metrics), again 3 s after a websocket client has taken a binary snapshot,
  and its peak (VmHWM);
- the wall beside its embedded gateway at the peer's scene C (1 M tickets, 3 102 grids,
  51 040 volunteers, 1080p offscreen): resident 3 s after it logs its cold start, its peak,
  frame p50 and cold start from the snapshot's sidecar, and at the same moment where its
  resident pages lie (/proc/PID/smaps): the binary's own, each shared library's (the largest
  few by name: on lavapipe, LLVM is its shader compiler), and anonymous memory (the heap, and
  on a software renderer the GPU's memory as well), the largest anonymous mappings by size.

Both run as a county runs them: without RUST_BACKTRACE (set, a debug build's renderer
captures a backtrace at every lock it takes, which reads the binary's unwind tables in: about
6 MB more resident).

Needs the Python `websockets` package (scripts/deps.sh installs it). Memory is read from
/proc, so Linux only. The 3 s pauses are a measurement's settling time (the heap handed back
on a thread of its own), not a wait for an event.
"""
import argparse
import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

BACKLOG = 1_000_000
PORT = 8799
# The environment the measured processes get (see the module's notes).
ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}


def status_mb(pid):
    s = Path(f"/proc/{pid}/status").read_text()
    field = lambda k: int(re.search(k + r":\s+(\d+)", s).group(1)) / 1024
    return round(field("VmRSS")), round(field("VmHWM"))


def where_resident(pid, exe):
    """Resident MB of the process's mappings: the binary, libraries, anonymous."""
    by_name, anon = {}, []
    name, size = None, 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
        if m:
            name = m.group(3)
            size = (int(m.group(2), 16) - int(m.group(1), 16)) / 2**20
            continue
        if line.startswith("Rss:"):
            kb = int(line.split()[1])
            anonymous = name == "" or name.startswith("[")  # the heap, stacks
            if anonymous:
                anon.append((size, kb / 1024))
            key = ("anonymous" if anonymous
                   else "binary" if Path(name).name == Path(exe).name
                   else Path(name).name)
            by_name[key] = by_name.get(key, 0) + kb / 1024
    libs = sorted(((v, k) for k, v in by_name.items() if k not in ("binary", "anonymous")),
                  reverse=True)
    anon.sort(key=lambda a: -a[1])
    return {"binary": round(by_name.get("binary", 0), 1),
            "anonymous": round(by_name.get("anonymous", 0), 1),
            "libraries": round(sum(v for v, _ in libs), 1),
            "largest_libraries": {k: round(v, 1) for v, k in libs[:4]},
            "largest_anonymous_mappings": [
                {"size_mb": round(sz, 1), "resident_mb": round(r, 1)} for sz, r in anon[:8]]}


def gateway(exe, work):
    history = work / "history"
    p = subprocess.Popen(
        [exe, "serve", "--listen", f"127.0.0.1:{PORT}", "--token", "t", "--scale", "11",
         "--backlog", str(BACKLOG), "--history-dir", str(history),
         "--audit-log", str(work / "audit.ndjson")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        print(f"  {Path(exe).name}: gateway loading {BACKLOG} tickets…", flush=True)
        while True:
            time.sleep(0.5)
            if p.poll() is not None:
                raise SystemExit(f"{exe} serve exited with {p.returncode}")
            try:
                m = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics").read().decode()
            except OSError:
                continue
            n = re.search(r"^datawall_open_tickets (\d+)", m, re.M)
            if n and int(n.group(1)) >= BACKLOG:
                break
        time.sleep(3)
        rss_in, _ = status_mb(p.pid)

        async def snapshot():
            url = f"ws://127.0.0.1:{PORT}/v1/feed?token=t&format=binary"
            async with websockets.connect(url, max_size=None) as ws:
                while True:
                    m = await ws.recv()
                    if isinstance(m, str) and '"snapshot_end"' in m:
                        return

        asyncio.run(snapshot())
        time.sleep(3)
        rss_sent, peak = status_mb(p.pid)
        return {"backlog_in_rss": rss_in, "after_snapshot_rss": rss_sent, "peak": peak}
    finally:
        p.terminate()
        p.wait()


def wall(exe, work, tag):
    out = work / f"wall-{tag}.png"
    p = subprocess.Popen(
        [exe, "snapshot", "--snapshot-format", "binary", "--offscreen", "--settle-frames", "10",
         "--width", "1920", "--height", "1080", "--load-tickets", "1000000",
         "--load-volunteers", "50000", "--scale", "11", "--measure-frames", "40",
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    print(f"  {Path(exe).name}: wall at scene C…", flush=True)
    for line in p.stderr:
        if "cold start:" in line:
            break
    time.sleep(3)
    rss, _ = status_mb(p.pid)
    where = where_resident(p.pid, exe)
    for _ in p.stderr:
        pass
    if p.wait() != 0:
        raise SystemExit(f"{exe} snapshot exited with {p.returncode}")
    d = json.loads(out.with_suffix(".json").read_text())
    return {"rss_after_cold_start": rss, "peak": round(d["wall_rss_mb"]),
            "frame_p50": round(d["frame_ms_p50"], 1), "cold_start_ms": round(d["cold_start_ms"]),
            "resident_after_cold_start": where}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for r in range(args.rounds):
        for tag, exe in [("before", args.before), ("after", args.after)]:
            with tempfile.TemporaryDirectory(prefix="datawall-memory-") as d:
                row = {"round": r, "build": tag, "exe": exe,
                       "gateway": gateway(exe, Path(d)), "wall": wall(exe, Path(d), tag)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
