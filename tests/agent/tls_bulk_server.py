"""A minimal HTTPS `_bulk` endpoint for the agent's TLS test: answers like a plain
Elasticsearch (no /_lookout/info), counts the documents it receives in COUNT_FILE and
acknowledges them. Usage: tls_bulk_server.py CERT KEY COUNT_FILE; prints `listening on
PORT` once ready."""

import gzip
import http.server
import json
import ssl
import sys

cert, key, count_file = sys.argv[1:4]
received = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(404, {"error": {"type": "not_found", "reason": "no such route"}, "status": 404})

    def do_POST(self):
        global received
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = [line for line in body.split(b"\n") if line]
        items = []
        for action in lines[0::2]:
            assert b'"create"' in action, action
            items.append({"create": {"status": 201, "result": "created"}})
        received += len(items)
        with open(count_file, "w") as out:
            out.write(str(received))
        self.reply(200, {"errors": False, "items": items})


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
