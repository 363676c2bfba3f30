#!/usr/bin/env python3
"""bench/l7 part 2: the latency a request pays through pol's in-kernel HTTP match against
the same policy enforced by a user-space reverse proxy (nginx from Debian's packages), side
by side in one run.

Two network namespaces joined by a veth pair; in the server's: the backend (a Python
HTTP/1.1 server, tests/l7_http/traffic.py) on port 8080 and nginx on port 8081 proxying
to it with examples/l7/gateway.pol's policy written as nginx locations (403 on /admin,
only GET and HEAD on /api/). Three ways in, measured in alternating rounds:

  direct   client -> backend, no policy at all (the floor)
  pol      client -> backend, examples/l7/gateway.pol on the server's tc ingress
  nginx    client -> nginx -> backend, the policy in nginx

Each client sends its requests (GET /api/items) one after the other on one kept-alive
connection (as nginx does to the backend, so the backend's cost is the same all three
ways), each timed from its send to the last byte of its answer. Prints median and 99th percentile in microseconds.
Needs root, nginx (apt-get install nginx-light or nginx) and a built pol:

    sudo POL=target/debug/pol bench/l7/latency.py
"""
import os, shutil, socket, statistics, subprocess, sys, tempfile, time

ROUNDS = int(os.environ.get("ROUNDS", "5"))
PER_ROUND = int(os.environ.get("PER_ROUND", "200"))
POL = os.environ.get("POL", "target/debug/pol")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A, B = "pbl7a", "pbl7b"
A_ADDR, B_ADDR = "10.97.0.1", "10.97.0.2"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backend {{ server 127.0.0.1:8080; keepalive 16; }}
    server {{
        listen 8081;
        merge_slashes on;
        location /admin {{ return 403; }}
        location /api/ {{
            limit_except GET {{ deny all; }}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }}
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }}
    }}
}}
"""

CLIENT = r'''
import socket, sys, time, json
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = b"GET /api/items HTTP/1.1\r\nHost: b\r\n\r\n"
out = []
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
for _ in range(n):
    t0 = time.perf_counter_ns()
    s.sendall(req)
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) >= length:
                buf = rest[length:]
                break
        d = s.recv(65536)
        if not d:
            print(json.dumps({"error": "closed: " + buf[:60].decode(errors="replace")}))
            sys.exit(1)
        buf += d
    t1 = time.perf_counter_ns()
    if not head.startswith(b"HTTP/1.1 200"):
        print(json.dumps({"error": head[:60].decode(errors="replace")}))
        sys.exit(1)
    out.append((t1 - t0) / 1000)
s.close()
print(json.dumps(out))
'''


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def setup():
    for ns in (A, B):
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
    sh("ip", "-n", A, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", B)
    sh("ip", "-n", A, "addr", "add", A_ADDR + "/24", "dev", "va")
    sh("ip", "-n", B, "addr", "add", B_ADDR + "/24", "dev", "vb")
    for ns, dev in ((A, "va"), (B, "vb"), (A, "lo"), (B, "lo")):
        sh("ip", "-n", ns, "link", "set", dev, "up")


def teardown():
    for ns in (A, B):
        sh("ip", "netns", "del", ns, check=False)


def client(port, n):
    import json
    r = sh("ip", "netns", "exec", B, sys.executable, "-c", CLIENT, A_ADDR, str(port), str(n))
    v = json.loads(r.stdout.strip().splitlines()[-1])
    if isinstance(v, dict):
        sys.exit(f"port {port}: {v}")
    return v


def main():
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        sys.exit("nginx is not installed (apt-get install nginx-light)")
    setup()
    tmp = tempfile.mkdtemp(prefix="pol_l7_bench")
    procs = []
    try:
        # The tests' server, with Nagle off: it writes headers and body separately, and
        # on nginx's kept-alive upstream connections Nagle plus delayed ACKs would add
        # 40 ms to every request (seen: a 48 ms median), which is no cost of nginx's.
        serve = ("import sys; sys.path.insert(0, %r); import traffic; "
                 "traffic.Handler.disable_nagle_algorithm = True; traffic.serve(8080)"
                 % os.path.join(ROOT, "tests/l7_http"))
        backend = subprocess.Popen(
            ["ip", "netns", "exec", A, sys.executable, "-c", serve],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(backend)
        backend.stdout.readline()
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=tmp))
        ng = subprocess.Popen(["ip", "netns", "exec", A, nginx, "-c", conf, "-p", tmp],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(ng)
        time.sleep(1)
        version = sh(nginx, "-v", check=False).stderr.strip()
        gateway = os.path.join(ROOT, "examples/l7/gateway.pol")
        results = {"direct": [], "pol": [], "nginx": []}
        for r in range(ROUNDS):
            order = ["direct", "pol", "nginx"]
            order = order[r % 3:] + order[:r % 3]
            for way in order:
                if way == "pol":
                    pol = subprocess.Popen(
                        ["nsenter", "--net=/run/netns/" + A, POL, "run", gateway, "--iface", "va", "--json"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    while True:
                        line = pol.stdout.readline()
                        if not line or '"attached"' in line:
                            break
                    results[way] += client(8080, PER_ROUND)
                    pol.send_signal(2)
                    pol.wait(timeout=10)
                else:
                    results[way] += client(8081 if way == "nginx" else 8080, PER_ROUND)
        print(f"| way in ({ROUNDS} rounds x {PER_ROUND} requests on one kept-alive connection; {version}) | median us | p99 us |")
        print("| --- | --- | --- |")
        for way, v in results.items():
            v.sort()
            p99 = v[min(len(v) - 1, int(len(v) * 0.99))]
            print(f"| {way} | {statistics.median(v):.0f} | {p99:.0f} |")
    finally:
        # TERM, not KILL: nginx's master then stops its workers (a killed master leaves
        # them running).
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        teardown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
