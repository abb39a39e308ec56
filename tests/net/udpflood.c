/*
 * udpflood: sends datagrams as fast as the sandbox's kernel takes them, to fill the network's
 * transmit ring (tests/tests/network.rs). Built statically by the e2e test.
 *
 *   udpflood ADDR PORT COUNT SIZE
 *
 * Prints "sent N failed M": datagrams the kernel accepted and refused (ENOBUFS and the like).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: udpflood ADDR PORT COUNT SIZE\n");
        return 2;
    }
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "udpflood: not an IPv4 address: %s\n", argv[1]);
        return 2;
    }
    long count = atol(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    if (count <= 0 || size == 0 || size > 65000) {
        fprintf(stderr, "udpflood: COUNT must be > 0 and SIZE 1..65000\n");
        return 2;
    }
    char *payload = calloc(1, size);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || payload == NULL) {
        perror("udpflood: socket");
        return 1;
    }
    long sent = 0, failed = 0;
    for (long i = 0; i < count; i++) {
        if (sendto(fd, payload, size, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)size) {
            sent++;
        } else {
            failed++;
        }
    }
    printf("sent %ld failed %ld\n", sent, failed);
    return 0;
}
