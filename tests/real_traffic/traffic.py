"""Traffic for the real-traffic tests: TCP bulk, HTTP and UDP (with GSO) between two
network namespaces. Every mode prints one JSON object on stdout and exits; every socket
has a timeout, so a filter that breaks traffic makes a mode fail, never hang.

  sink PORT [--udp BYTES]         receive one TCP connection (or UDP datagrams until
                                  BYTES arrived, or 10 quiet seconds), reply with the byte
                                  count, print it
  send HOST PORT BYTES            send BYTES over TCP, print what the sink counted
  udpsend HOST PORT BYTES SEG     send BYTES of UDP, UDP_SEGMENT=SEG (GSO) when SEG > 0
  http_serve PORT BYTES           serve GET /big (BYTES) and /small until told to stop
  http_get HOST PORT PATH         one GET, print status and body length
  connect HOST PORT               one TCP connect with a 5 s timeout: "ok" or "failed"
  listen PORT                     accept connections until killed (the telnet target)
  rawudp IFACE DSTMAC SRC DST PORT SIZE COUNT
                                  send COUNT IPv4/UDP frames of SIZE bytes through an
                                  AF_PACKET socket: a frame over a page leaves with only its
                                  Ethernet header in the socket buffer's linear part
"""
import json, socket, sys, time, threading, http.server, socketserver, http.client

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def out(obj):
    print(json.dumps(obj), flush=True)

mode = sys.argv[1]
if mode == "sink":
    port = int(sys.argv[2])
    if "--udp" in sys.argv:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # SO_RCVBUFFORCE: room for the whole burst, so a busy machine loses nothing here.
        s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)
        s.bind(("::", port))
        s.settimeout(20)
        print("ready", flush=True)
        # Until every expected byte is in: a loaded machine may pause the sender for a
        # while, so only a long silence ends the count early (and the test then fails).
        want = int(sys.argv[sys.argv.index("--udp") + 1])
        total = 0
        while total < want:
            try:
                total += len(s.recv(70000))
            except socket.timeout:
                break
            s.settimeout(10.0)
        out({"bytes": total})
        sys.exit(0)
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(4)
    s.settimeout(30)
    print("ready", flush=True)
    c, _ = s.accept()
    c.settimeout(30)
    total = 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        total += len(b)
    c.sendall(str(total).encode())
    c.close()
    out({"bytes": total})
elif mode == "send":
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    c = socket.socket(family(host), socket.SOCK_STREAM)
    c.settimeout(30)
    t0 = time.time()
    c.connect((host, port))
    chunk = bytes(range(256)) * 4096
    left = n
    while left > 0:
        k = c.send(chunk[: min(left, len(chunk))])
        left -= k
    c.shutdown(socket.SHUT_WR)
    reply = c.recv(64).decode()
    out({"sent": n, "counted": int(reply or -1), "secs": round(time.time() - t0, 3)})
elif mode == "udpsend":
    host, port, n, seg = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    c = socket.socket(family(host), socket.SOCK_DGRAM)
    if seg > 0:
        c.setsockopt(socket.IPPROTO_UDP, 103, seg)  # UDP_SEGMENT
    buf = b"u" * (seg * 40 if seg > 0 else 1400)
    left = n
    while left > 0:
        k = min(left, len(buf))
        if seg > 0:
            k = max(seg, k - k % seg)
        c.sendto(buf[:k], (host, port))
        left -= k
        time.sleep(0.002)
    out({"sent": n})
elif mode == "http_serve":
    port, n = int(sys.argv[2]), int(sys.argv[3])
    big = b"h" * n
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = big if self.path == "/big" else b"small"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        address_family = socket.AF_INET6
        daemon_threads = True
        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()
    srv = S(("::", port), H)
    print("ready", flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the test closes our stdin
    srv.shutdown()
elif mode == "http_get":
    host, port, path = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    c = http.client.HTTPConnection(host, port, timeout=20)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    out({"status": r.status, "len": len(body)})
elif mode == "connect":
    host, port = sys.argv[2], int(sys.argv[3])
    c = socket.socket(family(host), socket.SOCK_STREAM)
    # Long enough for a loaded machine to complete a handshake that is let through; a
    # dropped SYN is retransmitted within it and dropped again.
    c.settimeout(5.0)
    try:
        c.connect((host, port))
        out({"connect": "ok"})
    except OSError:
        out({"connect": "failed"})
elif mode == "listen":
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", int(sys.argv[2])))
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.close()
elif mode == "rawudp":
    import struct
    iface, dst_mac, src, dst = sys.argv[2:6]
    port, size, count = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
    def csum(b):
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        s = (s >> 16) + (s & 0xFFFF)
        s += s >> 16
        return ~s & 0xFFFF
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    src_mac = s.getsockname()[4]
    payload = b"r" * (size - 14 - 20 - 8)
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frame = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\x08\x00" + ip + udp
    refused = 0
    for _ in range(count):
        try:
            s.send(frame)
        except OSError as e:  # ENOBUFS: a tc egress filter dropped it
            if e.errno != 105:
                raise
            refused += 1
        time.sleep(0.002)
    out({"sent": count, "size": len(frame), "refused": refused})
else:
    sys.exit("unknown mode " + mode)
