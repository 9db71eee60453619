#!/usr/bin/env python3
"""Follow a Datawall gateway's feed with the `websockets` package and print what arrives.

    pip install websockets
    python3 examples/python/feed_client.py ws://127.0.0.1:8710/v1/feed TOKEN [TICKET_ID]

Prints `ready` once the snapshot is in, then one line per event (`seq type id`). With
TICKET_ID it exits 0 as soon as that ticket's `ticket.opened.v1` arrives.
"""

import asyncio
import json
import sys

import websockets


async def main(url: str, token: str, want: int | None) -> int:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  max_size=None) as ws:
        async for raw in ws:
            m = json.loads(raw)
            kind = m["type"]
            if kind == "snapshot_end":
                print("ready", flush=True)
            elif kind == "delta":
                for seq, event in m["events"]:
                    ident = event.get("ticket_id", event.get("volunteer_id", event.get("incident_id")))
                    print(seq, event["type"], ident, flush=True)
                    if want is not None and event["type"] == "ticket.opened.v1" \
                            and event["ticket_id"] == want:
                        return 0
            elif kind == "notice":
                print("notice", m["code"], m["message"], flush=True)
    return 1


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    want = int(sys.argv[3]) if len(sys.argv) == 4 else None
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], want)))
