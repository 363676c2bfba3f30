/* bench/rules: a tight loop of one system call, timed: `loop open N` (openat of a path
 * that does not exist), `loop connect N` (TCP connect to 127.0.0.1:1, refused) or
 * `loop exec N` (fork, execve /bin/true, wait). Prints the mean ns per call. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: loop open|connect|exec N\n");
        return 2;
    }
    long n = atol(argv[2]);
    int open_ = strcmp(argv[1], "open") == 0;
    int exec_ = strcmp(argv[1], "exec") == 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = -1;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (exec_) {
            pid_t p = fork();
            if (p == 0) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(127);
            }
            waitpid(p, NULL, 0);
        } else if (open_) {
            int fd = openat(AT_FDCWD, "/nonexistent/pol-bench", O_RDONLY);
            if (fd >= 0) close(fd);
        } else {
            /* A refused connect leaves the socket unusable: one per call, closed. */
            s = socket(AF_INET, SOCK_STREAM, 0);
            connect(s, (struct sockaddr *)&a, sizeof a);
            close(s);
        }
    }
    printf("%.1f\n", (now() - t0) / n);
    return 0;
}
