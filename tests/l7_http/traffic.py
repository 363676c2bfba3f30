"""HTTP traffic for tests/l7_http.rs, run inside network namespaces.

serve PORT: an HTTP/1.1 server; prints "ready", then one JSON line per request it
received ({"method", "target"}); answers 200 with the target as body.

client HOST PORT TIMEOUT [gateway|hosts]: sends each request of a fixed list on its own connection, all at
once, and prints one JSON object: request name -> the status line's code, or null when no
answer came within TIMEOUT seconds. Raw sockets, so requests can be what curl would never
send (lower-case methods, a request line split across two segments).
"""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


LOG = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            # One request per line: handler threads print at once.
            with LOG:
                print(json.dumps({"method": self.command, "target": self.path}), flush=True)
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def log_message(self, *args):
        pass


def serve(port):
    srv = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    srv.daemon_threads = True
    print("ready", flush=True)
    srv.serve_forever()


def request(line, host="t"):
    return (line + "\r\nHost: " + host + "\r\nConnection: close\r\n\r\n").encode()


REQUESTS = {
    "get_ok": [request("GET /ok HTTP/1.1")],
    "head_ok": [request("HEAD /ok HTTP/1.1")],
    "get_admin": [request("GET /admin/x HTTP/1.1")],
    "get_admin_query": [request("GET /admin?a=1 HTTP/1.1")],
    "get_secret": [request("GET /secret HTTP/1.1")],
    "get_secret2": [request("GET /secret2 HTTP/1.1")],
    "get_query": [request("GET /ok?next=/admin HTTP/1.1")],
    "delete": [request("DELETE /ok HTTP/1.1")],
    "delete_lower": [request("delete /ok HTTP/1.1")],
    "http10": [request("GET /ok HTTP/1.0")],
    # The request line in two segments: "GE", then the rest.
    "split": [b"GE", request("T /admin/x HTTP/1.1")],
    "post": [b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"],
}

# examples/l7/gateway.pol: what passes and what must not, whatever the spelling.
GATEWAY = {
    "get_api": [request("GET /api/items HTTP/1.1")],
    "head_api": [request("HEAD /api/items HTTP/1.1")],
    "get_lower_api": [request("get /api/items HTTP/1.1")],
    "get_index": [request("GET /index.html HTTP/1.1")],
    "post_index": [request("POST /index.html HTTP/1.1")],
    "post_api": [request("POST /api/items HTTP/1.1")],
    "delete_lower_api": [request("delete /api/items HTTP/1.1")],
    "get_admin": [request("GET /admin HTTP/1.1")],
    "get_pct_admin": [request("GET /%61dmin HTTP/1.1")],
    "get_dot_admin": [request("GET /api/../admin HTTP/1.1")],
    "get_dot2_admin": [request("GET /./admin HTTP/1.1")],
    "get_lower_admin": [request("get /admin HTTP/1.1")],
    "split_admin": [b"GET /adm", request("in HTTP/1.1")],
}

# Host rules (tests/l7_http.rs HOST_RULES).
HOSTS = {
    "host_ok": [request("GET /h HTTP/1.1", "good.example.com")],
    "host_bad_net": [request("GET /h HTTP/1.1", "bad.net")],
    "host_evil": [request("GET /h HTTP/1.1", "evil.com")],
    "host_evil_case": [request("GET /h HTTP/1.1", "EVIL.Com")],
    "host_evil_port_dot": [request("GET /h HTTP/1.1", "evil.com.:8080")],
    "host_sub": [request("GET /h HTTP/1.1", "a.b.BAD.net")],
    "host_lower_header": [b"GET /h HTTP/1.1\r\nhOsT:evil.org\r\nConnection: close\r\n\r\n"],
    "host_none": [b"GET /h HTTP/1.0\r\n\r\n"],
}


def send(host, port, parts, timeout, out, name):
    try:
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, p in enumerate(parts):
            if i:
                time.sleep(0.2)
            s.sendall(p)
        s.settimeout(timeout)
        data = s.recv(4096)
        s.close()
        words = data.split(b" ")
        out[name] = int(words[1]) if len(words) > 1 else None
    except OSError:
        out[name] = None


def client(host, port, timeout, which):
    out = {}
    reqs = {"gateway": GATEWAY, "hosts": HOSTS}.get(which, REQUESTS)
    threads = [
        threading.Thread(target=send, args=(host, port, parts, timeout, out, name))
        for name, parts in reqs.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "")
