/*
 * dnstcp: asks SERVER for NAME's A records over TCP (RFC 7766: two-byte length prefixes) and
 * prints "rcode N" and one "A x.x.x.x" line per address; sends the query COUNT times on one
 * connection (default 1). Built statically by the e2e test (tests/tests/network.rs): busybox's
 * nslookup asks over UDP only.
 *
 *   dnstcp SERVER NAME [COUNT]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int read_all(int fd, unsigned char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: dnstcp SERVER NAME [COUNT]\n");
        return 2;
    }
    int count = argc == 4 ? atoi(argv[3]) : 1;
    unsigned char query[300];
    size_t at = 2;
    memset(query, 0, sizeof query);
    /* id 0x4d53, recursion desired, one question */
    unsigned char header[12] = {0x4d, 0x53, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(query + at, header, sizeof header);
    at += sizeof header;
    const char *name = argv[2];
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);
        if (len == 0 || len > 63 || at + len + 6 > sizeof query) {
            fprintf(stderr, "dnstcp: bad name\n");
            return 2;
        }
        query[at++] = (unsigned char)len;
        memcpy(query + at, name, len);
        at += len;
        name += len + (dot ? 1 : 0);
    }
    query[at++] = 0;
    query[at++] = 0, query[at++] = 1; /* type A */
    query[at++] = 0, query[at++] = 1; /* class IN */
    query[0] = (unsigned char)((at - 2) >> 8);
    query[1] = (unsigned char)((at - 2) & 0xff);

    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(53);
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "dnstcp: not an IPv4 address: %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        perror("dnstcp: connect");
        return 1;
    }
    for (int q = 0; q < count; q++) {
        if (write(fd, query, at) != (ssize_t)at) {
            perror("dnstcp: write");
            return 1;
        }
        unsigned char prefix[2];
        if (read_all(fd, prefix, 2) != 0) {
            fprintf(stderr, "dnstcp: connection closed before an answer\n");
            return 1;
        }
        size_t len = ((size_t)prefix[0] << 8) | prefix[1];
        unsigned char *answer = malloc(len + 1);
        if (answer == NULL || len < 12 || read_all(fd, answer, len) != 0) {
            fprintf(stderr, "dnstcp: short answer\n");
            return 1;
        }
        printf("rcode %d\n", answer[3] & 0x0f);
        size_t p = 12;
        /* skip the question */
        while (p < len && answer[p] != 0) {
            p += (size_t)answer[p] + 1;
        }
        p += 5;
        int answers = (answer[6] << 8) | answer[7];
        for (int i = 0; i < answers && p < len; i++) {
            if ((answer[p] & 0xc0) == 0xc0) {
                p += 2;
            } else {
                while (p < len && answer[p] != 0) {
                    p += (size_t)answer[p] + 1;
                }
                p += 1;
            }
            if (p + 10 > len) {
                break;
            }
            int type = (answer[p] << 8) | answer[p + 1];
            size_t rdlen = ((size_t)answer[p + 8] << 8) | answer[p + 9];
            p += 10;
            if (type == 1 && rdlen == 4 && p + 4 <= len) {
                printf("A %d.%d.%d.%d\n", answer[p], answer[p + 1], answer[p + 2], answer[p + 3]);
            }
            p += rdlen;
        }
        free(answer);
    }
    close(fd);
    return 0;
}
