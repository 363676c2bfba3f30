"""bench/flood helpers: `server`, `flood N SECS`, `floodmany N SECS`, `client N`, `packet` (one SYN
frame)."""
import random, socket, struct, sys, time


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def syn(src, dst, sport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


cmd = sys.argv[1]
if cmd == "server":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.99.0.1", 80))
    s.listen(64)
    while True:
        c, _ = s.accept()
        c.close()
elif cmd == "flood":
    # N SYNs spread over SECS seconds (bounded, and lasting while the client connects).
    n, secs = int(sys.argv[2]), float(sys.argv[3])
    src, dst = socket.inet_aton("10.99.0.200"), socket.inet_aton("10.99.0.1")
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    t0 = time.monotonic()
    for i in range(n):
        r.sendto(syn(src, dst, 1024 + i % 60000, random.getrandbits(32)), ("10.99.0.1", 0))
        if i % 100 == 99:
            ahead = t0 + secs * (i + 1) / n - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(n, "%.2f" % (time.monotonic() - t0))
elif cmd == "floodmany":
    # As `flood`, from forged sources spread over 10.99.0.10-250 (a per-source limit lets
    # each of them through at its rate: only SYN cookies keep the queue free).
    n, secs = int(sys.argv[2]), float(sys.argv[3])
    dst = socket.inet_aton("10.99.0.1")
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    t0 = time.monotonic()
    for i in range(n):
        src = socket.inet_aton("10.99.0.%d" % (10 + i % 241))
        r.sendto(syn(src, dst, 1024 + i % 60000, random.getrandbits(32)), ("10.99.0.1", 0))
        if i % 100 == 99:
            ahead = t0 + secs * (i + 1) / n - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(n, "%.2f" % (time.monotonic() - t0))
elif cmd == "client":
    ok, times = 0, []
    for i in range(int(sys.argv[2])):
        t = socket.socket()
        t.settimeout(1)
        t0 = time.monotonic()
        try:
            t.connect(("10.99.0.1", 80))
            ok += 1
            times.append(time.monotonic() - t0)
        except OSError:
            pass
        t.close()
        time.sleep(0.05)
    print(ok, "%.1f" % (1000 * sum(times) / len(times)) if times else "-")
elif cmd == "packet":
    eth = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00"
    sys.stdout.buffer.write(eth + syn(socket.inet_aton("10.0.0.2"), socket.inet_aton("10.0.0.1"), 40000, 1))
