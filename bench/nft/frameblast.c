// frameblast: write COUNT Ethernet frames into a TAP device of its own, cycling through the
// frames of FILE (records: u16 length, little-endian, then the frame), and print ns per
// frame as JSON. A frame written to a TAP device is received within the write call
// (tun_get_user hands it to netif_receive_skb in the writer's context), so the time covers
// the whole receive path: ingress, the prerouting hooks and the routing decision. The
// frames' destination MAC is set to the device's own, so they are for this host.
// Run it inside a private network namespace (bench/nft/harness.py does).
//   usage: frameblast FILE COUNT [IFNAME]
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: frameblast FILE COUNT [IFNAME]\n");
    return 2;
  }
  long count = atol(argv[2]);
  if (count <= 0 || count > 100000000) {
    fprintf(stderr, "COUNT must be 1..100000000\n");
    return 2;
  }
  const char *name = argc == 4 ? argv[3] : "polnft0";
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  static unsigned char buf[1 << 24];
  size_t size = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  size_t cap = 1024, n = 0, *off = malloc(cap * sizeof(size_t));
  for (size_t at = 0; at + 2 <= size;) {
    size_t len = buf[at] | (buf[at + 1] << 8);
    if (len < 14 || at + 2 + len > size) {
      fprintf(stderr, "%s: bad record at byte %zu\n", argv[1], at);
      return 1;
    }
    if (n == cap) off = realloc(off, (cap *= 2) * sizeof(size_t));
    off[n++] = at;
    at += 2 + len;
  }
  if (n == 0) {
    fprintf(stderr, "%s holds no frame\n", argv[1]);
    return 1;
  }
  int fd = open("/dev/net/tun", O_RDWR);
  if (fd < 0) {
    perror("/dev/net/tun");
    return 1;
  }
  struct ifreq ifr = {0};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    perror("TUNSETIFF");
    return 1;
  }
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq up = {0};
  strncpy(up.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &up) < 0 || (up.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &up)) < 0) {
    perror("bring the tap up");
    return 1;
  }
  struct ifreq hw = {0};
  strncpy(hw.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFHWADDR, &hw) < 0) {
    perror("SIOCGIFHWADDR");
    return 1;
  }
  for (size_t i = 0; i < n; i++) memcpy(buf + off[i] + 2, hw.ifr_hwaddr.sa_data, 6);
  long fails = 0;
  long long t0 = now_ns();
  for (long i = 0; i < count; i++) {
    size_t at = off[i % n];
    size_t len = buf[at] | (buf[at + 1] << 8);
    if (write(fd, buf + at + 2, len) < 0) fails++;
  }
  long long dt = now_ns() - t0;
  printf("{\"count\": %ld, \"frames\": %zu, \"send_failures\": %ld, \"ns_total\": %lld, "
         "\"ns_per_packet\": %.1f}\n",
         count, n, fails, dt, (double)dt / count);
  close(fd);
  return 0;
}
