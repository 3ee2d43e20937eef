#!/usr/bin/env python3
"""A local webhook gatekeeper for Ward's access requests, standing in for a workflow engine.

Ward POSTs each new access request here as JSON, signed with the role's secret:
    X-Ward-Signature: sha256=<hex HMAC-SHA256 of the body>
    X-Ward-Timestamp: <RFC 3339 time, also inside the signed body>
This server checks the signature (constant-time) and the timestamp (at most five minutes
old, so a captured call cannot be replayed later), then applies one business rule: the
request's event type must be one of the allowed types (by default the nightly billing
report). It answers {"decision": "allow" | "deny", "reason": "..."}; Ward treats anything
else (an error status, garbage, no answer in time) as a deny.

Usage:
    GATEKEEPER_SECRET=... python3 gatekeeper.py [--listen 127.0.0.1:9000]
        [--allow-event nightly-billing-report ...]
It prints "gatekeeper listening on http://HOST:PORT" once ready (port 0 picks a free port),
then one line per decision. The secret and the signature are never printed.

Python's standard library only.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024
MAX_AGE = datetime.timedelta(minutes=5)


def decide(request, allowed_event_types):
    """The business rule: which access requests the workflow engine vouches for."""
    event = request.get("event") or {}
    event_type = event.get("type") or ""
    if event_type not in allowed_event_types:
        return "deny", f"no running job has event type {event_type!r}"
    if not event.get("id"):
        return "deny", "the event reference has no id"
    return "allow", f"job {event.get('id')} of type {event_type} is running"


def make_handler(secret, allowed_event_types):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                return self.answer(400, {"decision": "deny", "reason": "no body or too large"})
            body = self.rfile.read(length)
            expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            signature = self.headers.get("X-Ward-Signature") or ""
            if not hmac.compare_digest(signature.encode(), expected.encode()):
                self.log("refused a call with a wrong signature")
                return self.answer(401, {"decision": "deny", "reason": "bad signature"})
            try:
                request = json.loads(body)
                stamp = datetime.datetime.fromisoformat(request["timestamp"].replace("Z", "+00:00"))
            except (ValueError, KeyError, TypeError, AttributeError):
                return self.answer(400, {"decision": "deny", "reason": "not a Ward access request"})
            if abs(datetime.datetime.now(datetime.timezone.utc) - stamp) > MAX_AGE:
                return self.answer(401, {"decision": "deny", "reason": "stale timestamp"})
            decision, reason = decide(request, allowed_event_types)
            self.log(f"{decision} request {request.get('request_id')} for role "
                     f"{request.get('role')!r}: {reason}")
            self.answer(200, {"decision": decision, "reason": reason})

        def answer(self, status, document):
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log(self, line):
            print(f"gatekeeper: {line}", flush=True)

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass  # one line per decision is enough; no access log

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--allow-event", action="append", dest="allowed",
                        help="an event type to allow (repeatable; default nightly-billing-report)")
    arguments = parser.parse_args()
    secret = os.environ.get("GATEKEEPER_SECRET", "")
    if len(secret) < 16:
        sys.exit("gatekeeper: set GATEKEEPER_SECRET (16 characters or more, the role's gatekeeper.secret)")
    host, _, port = arguments.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), make_handler(secret.encode(), arguments.allowed or ["nightly-billing-report"]))
    print(f"gatekeeper listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
