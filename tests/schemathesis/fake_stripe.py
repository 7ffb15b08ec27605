"""Answers Stripe's Checkout Session creation on loopback, so that a schemathesis run can buy
plans without reaching Stripe. Only for that run; the Rust tests have their own fake."""
import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stripe(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/checkout/sessions":
            self.send_response(404)
            self.end_headers()
            return
        session = f"cs_test_{uuid.uuid4().hex}"
        body = json.dumps({"id": session, "object": "checkout.session",
                           "url": f"https://checkout.stripe.test/{session}"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Stripe).serve_forever()
