#!/usr/bin/env python3
"""Helpers for fuzz.sh.

report.py tally FILE     Per operation: generated valid (positive) and invalid (negative) cases,
                         and how many valid ones msbd refused as input it does not take: 400,
                         415, or a 422 that is not one of the documented `unprocessable` or
                         `start_failed` answers (axum's plain-text 422 for a body serde refuses).
                         Prints a table and the number of operations that refused most valid
                         inputs.
report.py cleanup SOCKET Removes every sandbox (force) through msbd's socket, then stops msbd.
"""

import collections
import http.client
import json
import socket
import sys
import urllib.parse


def tally(path):
    counts = collections.defaultdict(lambda: collections.Counter())
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            c = counts[row["operation"]]
            c[row["mode"]] += 1
            status, kind = row["status"], row.get("kind")
            refused = status in (400, 415) or (
                status == 422 and kind not in ("unprocessable", "start_failed")
            )
            if row["mode"] == "positive" and refused:
                c["refused"] += 1
            c[f'{row["mode"]}:{row["status"]}'] += 1
    mostly = 0
    print(f'{"operation":<42} {"valid":>6} {"refused":>8} {"invalid":>8}  statuses')
    for op in sorted(counts):
        c = counts[op]
        statuses = " ".join(
            f"{k}x{v}" for k, v in sorted(c.items()) if ":" in k
        )
        flag = ""
        if c["positive"] and c["refused"] * 2 > c["positive"]:
            mostly += 1
            flag = "  <- mostly refused valid input"
        print(f'{op:<42} {c["positive"]:>6} {c["refused"]:>8} {c["negative"]:>8}  {statuses}{flag}')
    print(f"operations that refused most valid inputs: {mostly} of {len(counts)}")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.unix_path)


def request(sock, method, path):
    conn = UnixConnection(sock)
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def cleanup(sock):
    status, body = request(sock, "GET", "/v1/sandboxes?all=true")
    names = [s["name"] for s in json.loads(body)] if status == 200 else []
    for name in names:
        status, body = request(sock, "DELETE", f"/v1/sandboxes/{urllib.parse.quote(name, safe='')}?force=true")
        if status not in (204, 404):
            print(f"removing {name!r}: {status} {body[:200]!r}", file=sys.stderr)
    print(f"removed {len(names)} sandboxes")
    request(sock, "POST", "/v1/server/shutdown")


if __name__ == "__main__":
    {"tally": tally, "cleanup": cleanup}[sys.argv[1]](sys.argv[2])
