#!/usr/bin/env python3
"""A minimal receiver for agp's webhook approvals (README "Webhook approvals"), standard
library only: it checks each approval request's signature, shows the request on this console,
reads decisions typed on stdin and sends each back to agp, signed.

    AGP_WEBHOOK_SECRET_FILE=~/.agp/keys/webhook.secret python3 receiver.py [PORT]

then set `[approvals.webhook] url = "http://127.0.0.1:PORT/approvals"`. Type `allow NAME` or
`deny NAME [reason]` to decide the oldest open request as approver NAME (one line per approver
when the rule's quorum is more than one). A real receiver replaces the console with its chat
tool, and must know who each approver is: agp trusts the `approver` this receiver names.
"""

import hashlib
import hmac
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = open(os.path.expanduser(os.environ["AGP_WEBHOOK_SECRET_FILE"]), "rb").read().strip()
WINDOW_SECS = 300
OPEN = queue.Queue()


def sign(timestamp, body):
    mac = hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verified(headers, body):
    timestamp = headers.get("X-Agp-Timestamp", "")
    signature = headers.get("X-Agp-Signature", "")
    if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > WINDOW_SECS:
        return False
    return hmac.compare_digest(sign(timestamp, body), signature)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not verified(self.headers, body):
            self.send_response(401)
            self.end_headers()
            print("refused a request with a bad signature", flush=True)
            return
        request = json.loads(body)
        self.send_response(200)
        self.end_headers()
        print(
            "approval needed: {tool} {input_summary!r} (rule {rule}: {reason}); "
            "approvers {approvers}, quorum {quorum}".format(**request),
            flush=True,
        )
        OPEN.put(request)

    def log_message(self, *args):
        pass


def send(request, decision, approver, reason):
    doc = {
        "call_id": request["call_id"],
        "input_sha256": request["input_sha256"],
        "nonce": request["nonce"],
        "decision": decision,
        "approver": approver,
    }
    if reason:
        doc["reason"] = reason
    body = json.dumps(doc).encode()
    timestamp = str(int(time.time()))
    post = urllib.request.Request(
        request["callback_url"],
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Agp-Timestamp": timestamp,
            "X-Agp-Signature": sign(timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(post, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}")


def console():
    current = None
    for line in sys.stdin:
        words = line.split(maxsplit=2)
        if len(words) < 2 or words[0] not in ("allow", "deny"):
            print("type: allow NAME | deny NAME [reason]", flush=True)
            continue
        if current is None:
            current = OPEN.get()
        answer = send(current, words[0], words[1], words[2].strip() if len(words) > 2 else None)
        print("agp answered: " + json.dumps(answer, sort_keys=True), flush=True)
        # The request stays open while more approvers are needed (or a decision was refused,
        # say a name that is not an approver's), until it is decided or over.
        if answer.get("status") in ("granted", "denied") or answer.get("reason") in (
            "expired",
            "replayed",
            "unknown_call",
        ):
            current = None


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8646
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("listening on http://127.0.0.1:%d/approvals" % server.server_address[1], flush=True)
    console()


if __name__ == "__main__":
    main()
