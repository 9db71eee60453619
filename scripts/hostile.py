#!/usr/bin/env python3
"""Hostile input against a real `datawall serve` process: garbage and TLS bytes, non-websocket
requests, slow-loris heads, oversized heads, 200 walls at once, an oversized message, a flood,
unknown message types, invalid UTF-8, a client that never reads. Prints the gateway's counters
and its resident memory before, at the peak and after everything closed.

Usage (from the repository root): python3 scripts/hostile.py target/debug/datawall
"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request
from websockets.sync.client import connect

exe = sys.argv[1]
port = 18720
p = subprocess.Popen([exe, "serve", "--no-history", "--token", "tok", "--listen", f"127.0.0.1:{port}",
                      "--pack", "data/pingluo", "--speed", "1", "--audit-log", os.path.join(tempfile.mkdtemp(), "audit.ndjson")],
                     stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) / 1024
def metrics():
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz"); break
    except Exception: time.sleep(0.1)
url = f"ws://127.0.0.1:{port}/v1/feed?token=tok"
def sync():
    ws = connect(url, max_size=None)
    while True:
        m = json.loads(ws.recv())
        if m["type"] == "snapshot_end": return ws
ws = sync(); ws.close()
time.sleep(1)
before = rss()
print(f"RSS after start and one wall synced: {before:.1f} MB")
# 1. garbage bytes, TLS hello, non-websocket request, slow-loris heads, oversized heads
for i in range(100):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(os.urandom(512)); s.close()
for i in range(50):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"GET /v1/feed HTTP/1.1\r\nHost: x\r\n\r\n"); s.recv(100); s.close()
loris = []
for i in range(50):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"GET /v1/feed HTTP/1.1\r\nHo"); loris.append(s)
for i in range(20):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n"); s.close()
# 2. 200 walls at once (each gets a snapshot), then gone
walls = []
def one():
    try: walls.append(sync())
    except Exception as e: pass
ts = [threading.Thread(target=one) for _ in range(200)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"200 walls synced at once: {len(walls)} (per-address limit 64 answers the rest 503)")
peak = rss()
for w in walls: w.close()
# 3. oversized message, floods, unknown types, invalid UTF-8
w = sync()
try: w.send("x" * 70000); w.recv()
except Exception: pass
w = sync()
try:
    for i in range(500): w.send(json.dumps({"type": "heartbeat", "client_time_ms": i}))
    w.recv(); w.recv()
except Exception: pass
w = sync()
try:
    for i in range(50): w.send(json.dumps({"type": "what_is_this", "n": i}))
except Exception: pass
w.close()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /v1/feed?token=tok HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
time.sleep(0.5)
s.sendall(bytes([0x81, 0x84, 1, 2, 3, 4]) + bytes(b ^ k for b, k in zip(b"\xff\xfe\xfd\xfc", [1, 2, 3, 4])))
s.close()
# 4. a wall that never reads, for 20 s of feed
lazy = socket.create_connection(("127.0.0.1", port))
lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
lazy.sendall(b"GET /v1/feed?token=tok HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
time.sleep(20)
peak = max(peak, rss())
for s in loris: s.close()
lazy.close()
time.sleep(16)
after = rss()
m = metrics()
keep = [l for l in m.splitlines() if l.startswith("datawall_") and any(k in l for k in ["protocol_errors", "oversized", "bad_client", "flood", "rejected_limit", "heartbeat_timeouts", "slow_disconnects", "resyncs", "snapshots_sent", "datawall_clients "])]
print("\n".join(keep))
print(f"RSS before {before:.1f} MB, peak {peak:.1f} MB, after everything closed {after:.1f} MB")
p.terminate(); p.wait()
