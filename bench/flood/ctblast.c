// ctblast: one established UDP flow on loopback, timed. A receiving socket is bound on
// DST:PORT (never read, tiny buffer) and first sends one datagram to SRC:SPORT, so the flow
// DST:PORT -> SRC:SPORT exists (new) in conntrack and in pol's table; then COUNT datagrams
// SRC:SPORT -> DST:PORT, the flow's replies (established), are sent and the ns per packet
// printed as JSON; what the receiving socket kept is read at the end. Modelled on
// bench/nft's udpblast (which binds no fixed source port).
//   usage: ctblast SRC_IP SPORT DST_IP PORT COUNT
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: ctblast SRC_IP SPORT DST_IP PORT COUNT\n");
    return 2;
  }
  long count = atol(argv[5]);
  if (count <= 0 || count > 10000000) return 2;  // bounded by construction
  struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
  inet_pton(AF_INET, argv[1], &src.sin_addr);
  src.sin_port = htons(atoi(argv[2]));
  inet_pton(AF_INET, argv[3], &dst.sin_addr);
  dst.sin_port = htons(atoi(argv[4]));
  int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
  int small = 4096;
  setsockopt(rx, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(tx, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  if (bind(rx, (struct sockaddr *)&dst, sizeof(dst))) { perror("bind rx"); return 1; }
  if (bind(tx, (struct sockaddr *)&src, sizeof(src))) { perror("bind tx"); return 1; }
  char buf[18] = "pol-ct-bench-udp..";
  if (sendto(rx, buf, sizeof(buf), 0, (struct sockaddr *)&src, sizeof(src)) < 0) {
    perror("primer");
    return 1;
  }
  usleep(10000);
  long fails = 0;
  long long t0 = now_ns();
  for (long i = 0; i < count; i++)
    if (sendto(tx, buf, sizeof(buf), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0) fails++;
  long long dt = now_ns() - t0;
  // Read what the tiny buffer kept, so the kernel counts it (UDP InDatagrams counts reads).
  usleep(10000);
  while (recv(rx, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
  printf("{\"count\": %ld, \"send_failures\": %ld, \"ns_total\": %lld, \"ns_per_packet\": %.1f}\n",
         count, fails, dt, (double)dt / count);
  return 0;
}
