/* agp-probe: the hostile client of the provider-generic escape tests. Static, so the same
 * binary runs under bubblewrap (host libraries) and in a busybox container (none). Each mode
 * prints what it reached on stdout (CONNECTED, UDP-SENT, ...) or why not on stderr as
 * "probe MODE TARGET: <strerror> (errno N)", exit 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char *mode, const char *target) {
    int e = errno;
    fprintf(stderr, "probe %s %s: %s (errno %d)\n", mode, target, strerror(e), e);
    return 1;
}

static socklen_t unix_addr(struct sockaddr_un *un, const char *name, int abstract) {
    size_t n = strlen(name);
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    if (n + 2 > sizeof un->sun_path) {
        fprintf(stderr, "probe: name too long\n");
        exit(2);
    }
    memcpy(un->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: probe tcp|udp ADDR PORT | unix|talk|abstract|own NAME\n");
        return 2;
    }
    const char *mode = argv[1], *target = argv[2];
    if (!strcmp(mode, "tcp") || !strcmp(mode, "udp")) {
        if (argc < 4) return 2;
        struct sockaddr_storage ss;
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        socklen_t len;
        memset(&ss, 0, sizeof ss);
        if (inet_pton(AF_INET, target, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((unsigned short)atoi(argv[3]));
            len = sizeof *a4;
        } else if (inet_pton(AF_INET6, target, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((unsigned short)atoi(argv[3]));
            len = sizeof *a6;
        } else {
            fprintf(stderr, "probe: %s is not a numeric address\n", target);
            return 2;
        }
        int udp = mode[0] == 'u';
        int fd = socket(ss.ss_family, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0) return fail(mode, target);
        if (udp) {
            if (sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len) < 0) return fail(mode, target);
            puts("UDP-SENT");
            return 0;
        }
        if (connect(fd, (struct sockaddr *)&ss, len) < 0) return fail(mode, target);
        puts("CONNECTED");
        return 0;
    }
    struct sockaddr_un un;
    socklen_t len = unix_addr(&un, target, !strcmp(mode, "abstract"));
    if (!strcmp(mode, "own")) {
        /* Connecting as such works: to a socket this process listens on. */
        int srv = socket(AF_UNIX, SOCK_STREAM, 0);
        if (srv < 0 || bind(srv, (struct sockaddr *)&un, len) < 0 || listen(srv, 1) < 0)
            return fail(mode, target);
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&un, len) < 0) return fail(mode, target);
        unlink(target);
        puts("OWN-CONNECTED");
        return 0;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&un, len) < 0) return fail(mode, target);
    printf("CONNECTED\n");
    fflush(stdout);
    if (!strcmp(mode, "talk")) {
        /* A request and its one-line answer (the gateway's shape). */
        char buf[64];
        if (write(fd, "ping\n", 5) != 5) return fail(mode, target);
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
    } else if (write(fd, "from-the-sandbox", 16) < 0) {
        return fail(mode, target);
    }
    return 0;
}
