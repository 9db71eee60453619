#!/usr/bin/env python3
"""Publish Datawall events to the county's JetStream stream with nats-py, as a third-party
producer (the county's ticket platform, a phone app) would.

    pip install nats-py
    python3 examples/python/nats_publish.py nats://127.0.0.1:4222 640221 events.ndjson
    echo '{"type":"ticket.opened.v1",...}' | python3 examples/python/nats_publish.py nats://127.0.0.1:4222 640221 -

Each line of the input is one event exactly as in docs/PROTOCOL.md. The lines go out as one
NDJSON message with a Nats-Msg-Id (a retry of the same input within two minutes is stored
once), and the script prints the stream sequence JetStream acknowledged.
"""

import asyncio
import hashlib
import sys

import nats


async def main(url: str, county: str, path: str) -> int:
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    lines = [l for l in data.splitlines() if l.strip()]
    if not lines:
        print("nothing to publish: the input has no events", file=sys.stderr)
        return 2
    body = b"\n".join(lines) + b"\n"
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        ack = await js.publish(
            f"datawall.{county}.events",
            body,
            headers={"Nats-Msg-Id": "py:" + hashlib.sha256(body).hexdigest()},
            timeout=10,
        )
        print(f"stored {len(lines)} events as stream message {ack.seq} of {ack.stream}"
              + (" (duplicate: already stored)" if ack.duplicate else ""))
    finally:
        await nc.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(*sys.argv[1:])))
