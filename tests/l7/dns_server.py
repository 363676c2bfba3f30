"""A tiny DNS responder for the L7 tests: answers every UDP (and TCP) query on port 53.

Names ending in `nx.test` get NXDOMAIN, the rest an A record 192.0.2.53. Each question
name that arrives is appended to the log file (argv[1]), one per line, so a test can tell
what reached the server. Prints `ready` once it listens.
"""
import socket
import struct
import sys
import threading

LOG = sys.argv[1]
lock = threading.Lock()


def qname(msg):
    pos, labels = 12, []
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1:pos + 1 + n].decode("latin-1"))
        pos += n + 1
    return ".".join(labels), pos + 5


def answer(msg):
    name, end = qname(msg)
    with lock, open(LOG, "a") as f:
        f.write(name + "\n")
    ident = msg[:2]
    question = msg[12:end]
    if name.lower().endswith("nx.test"):
        return ident + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 53])
    return ident + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + rr


def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 53))
    return s


def tcp():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 53))
    s.listen(16)
    return s


def serve_tcp(s):
    while True:
        c, _ = s.accept()
        # One thread per connection: a client whose query a filter dropped must not
        # hold up the next.
        threading.Thread(target=serve_conn, args=(c,), daemon=True).start()


def serve_conn(c):
    try:
        c.settimeout(2)
        head = c.recv(2)
        if len(head) < 2:
            return
        n = struct.unpack(">H", head)[0]
        msg = b""
        while len(msg) < n:
            part = c.recv(n - len(msg))
            if not part:
                break
            msg += part
        out = answer(msg)
        c.sendall(struct.pack(">H", len(out)) + out)
    except OSError:
        pass
    finally:
        c.close()


u, t = udp(), tcp()
threading.Thread(target=serve_tcp, args=(t,), daemon=True).start()
print("ready", flush=True)
while True:
    msg, peer = u.recvfrom(4096)
    try:
        u.sendto(answer(msg), peer)
    except (IndexError, UnicodeError):
        pass
