#!/usr/bin/env python3
"""A webhook receiver for txbox's http target tests (test/t/09x_http*.pl)
and bench (bench/http.sh).

    http_receiver.py PORT LOG [SECRET...]

Listens on 127.0.0.1:PORT (HTTP/1.1, keep-alive, a thread per
connection); https when the environment names a directory with
server.crt and server.key in RECEIVER_TLS_DIR.  Every POST appends one JSON line to LOG: id, timestamp, key,
topic, content_type, body (text, or base64 when binary; null when over
1 MB), body_len, status answered,
sig_ok (every v1 signature verifies with the SECRET at the same position,
Standard Webhooks: HMAC-SHA256 of "id.timestamp.body", "whsec_" + base64
secrets), the other headers, t (receive time), overlap (another request of
the same key was in progress) and in_flight (requests in progress).  With
LOG "-" nothing is logged (bench).

POST /control takes a JSON object that changes what comes next:
  {"queue": [503, 429]}   answer these statuses to the next requests
  {"retry_after": 3}      Retry-After seconds sent with 429 and 503
  {"hang": true}          hold requests until hang is false again
  {"delay": 0.005}        seconds to wait before each answer
  {"accept_poison": true} accept bodies containing "poison" (else 400,
                          echoing the Authorization header back)
  {"rules": [{"text": "x", "status": 500, "delay": 0.5, "times": 1}]}
                          a request whose body contains text gets the first
                          such rule's status (default: as without it) and
                          delay, times times (default: always)
  {"framing": "length"}   how answers are framed: "length" (the default:
                          Content-Length), "chunked" (the body in chunks
                          of 3 bytes and the rest), "close" (no length: the
                          body ends with the connection), "continue" (a 100
                          Continue first), "drop" (Content-Length, then the
                          connection closed without a word), "garbage" (not
                          HTTP at all)
  {"raw": [{...}, ...]}   the next requests' answers, one each, as exact
                          bytes (then answers as above): "parts", strings
                          whose code points 0-255 are the bytes written in
                          turn, each in pieces of "split" bytes (default
                          whole) with "pause" seconds before every piece
                          but the first; then "flood", written over and over
                          (with "pause" before each) until the sender goes
                          or for at most 20 s; "early": answer before
                          reading the request's body; "close" (default
                          true): close the connection afterwards; "status":
                          logged as the answer's (default 0: not an answer);
                          "times": for that many requests (default 1)
"""
import base64
import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port = int(sys.argv[1])
log_path = sys.argv[2]
secrets = [base64.b64decode(s[6:] if s.startswith("whsec_") else s) for s in sys.argv[3:]]

lock = threading.Lock()
state = {"queue": [], "retry_after": None, "hang": False, "delay": 0,
         "accept_poison": False, "rules": [], "framing": "length", "raw": []}
busy_keys = {}
in_flight = [0]
log = None if log_path == "-" else open(log_path, "a", buffering=1)


def signatures_ok(msg_id, ts, body, header):
    sigs = [s[3:] for s in (header or "").split(" ") if s.startswith("v1,")]
    if len(sigs) != len(secrets):
        return False
    content = msg_id.encode() + b"." + ts.encode() + b"." + body
    for secret, sig in zip(secrets, sigs):
        want = base64.b64encode(hmac.new(secret, content, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(want, sig):
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=(), framing="length"):
        if framing == "garbage":
            self.wfile.write(b"HELLO THERE\r\n\r\n")
            self.close_connection = True
            return
        if framing == "continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (body[:3], body[3:]):
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if framing == "close":
            self.send_header("Connection", "close")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if framing in ("close", "drop"):
            self.close_connection = True

    def answer_raw(self, raw):
        """write raw's bytes (see "raw" above); False when the sender went"""
        pieces = []
        for part in raw.get("parts", []):
            data = part.encode("latin-1")
            step = raw.get("split") or len(data) or 1
            # (an empty part: a pause)
            pieces += [data[i:i + step] for i in range(0, max(len(data), 1), step)]
        flood = raw.get("flood", "").encode("latin-1")
        until = time.time() + 20
        try:
            for i, piece in enumerate(pieces):
                if i > 0 and raw.get("pause"):
                    time.sleep(raw["pause"])
                self.wfile.write(piece)
            while flood and time.time() < until:
                if raw.get("pause"):
                    time.sleep(raw["pause"])
                self.wfile.write(flood)
        except OSError:
            self.close_connection = True
            return False
        self.close_connection = raw.get("close", True)
        return True

    def do_POST(self):
        with lock:
            raw = state["raw"][0] if state["raw"] and self.path != "/control" else None
            if raw is not None:
                raw["times"] = raw.get("times", 1) - 1
                if raw["times"] <= 0:
                    state["raw"].pop(0)
        early = raw is not None and raw.get("early")
        body = b"" if early else self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/control":
            with lock:
                state.update(json.loads(body))
            return self.answer(200)
        key = self.headers.get("txbox-key")
        with lock:
            in_flight[0] += 1
            now_in_flight = in_flight[0]
            overlap = key is not None and busy_keys.get(key, 0) > 0
            if key is not None:
                busy_keys[key] = busy_keys.get(key, 0) + 1
            delay = state["delay"]
            framing = state["framing"]
            if raw is not None:
                status = raw.get("status", 0)
                delay = 0
            else:
                status = state["queue"].pop(0) if state["queue"] else 200
                if framing == "garbage":
                    status = 0          # not an answer: logged as such
                rule = next((r for r in state["rules"] if r["text"].encode() in body), None)
                if rule is not None:
                    status = rule.get("status", status)
                    delay = rule.get("delay", delay)
                    rule["times"] = rule.get("times", 0) - 1
                    if rule["times"] == 0:
                        state["rules"].remove(rule)
        try:
            while state["hang"]:
                time.sleep(0.05)
            if delay:
                time.sleep(delay)
            extra = []
            answer = b""
            if status == 200 and b"poison" in body and not state["accept_poison"] and raw is None:
                status = 400
                answer = ("poison refused for " + str(self.headers.get("Authorization"))).encode()
            if status in (429, 503) and state["retry_after"] is not None:
                extra.append(("Retry-After", str(state["retry_after"])))
            if log is not None:
                msg_id = self.headers.get("webhook-id")
                ts = self.headers.get("webhook-timestamp")
                ctype = self.headers.get("Content-Type")
                binary = ctype == "application/octet-stream"
                rec = {"id": msg_id, "timestamp": ts, "key": key,
                       "topic": self.headers.get("txbox-topic"),
                       "content_type": ctype,
                       "body": None if len(body) > 1 << 20 else
                       base64.b64encode(body).decode() if binary else body.decode(),
                       "body_len": len(body),
                       "status": status,
                       "sig_ok": signatures_ok(msg_id or "", ts or "", body,
                                               self.headers.get("webhook-signature")),
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "t": time.time(), "overlap": overlap, "in_flight": now_in_flight}
                with lock:
                    log.write(json.dumps(rec) + "\n")
        finally:
            # done before answering: the sender may send the key's next
            # message as soon as it has the answer
            with lock:
                in_flight[0] -= 1
                if key is not None:
                    busy_keys[key] -= 1
        if raw is None:
            self.answer(status, answer, extra, framing)
        else:
            self.answer_raw(raw)
            if early:
                # the request's body unread: no next request on this connection
                self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


server = Server(("127.0.0.1", port), Handler)
if os.environ.get("RECEIVER_TLS_DIR"):
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(os.environ["RECEIVER_TLS_DIR"], "server.crt"),
                        os.path.join(os.environ["RECEIVER_TLS_DIR"], "server.key"))
    server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
