/* A workload that tries to reach past its sandbox, one attempt per argument, and prints
 * "<attempt> ok" or "<attempt> <errno name>" for each. Built static by the escape tests
 * (tests/tests/escape.rs) and run inside a real sandbox; the tests decide what must fail. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *errno_name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case ESRCH: return "ESRCH";
    case EROFS: return "EROFS";
    case ENOTDIR: return "ENOTDIR";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "errno";
    }
}

#if defined(__x86_64__)
/* A system call through the i386 entry (`int $0x80`), which 64-bit code can use too: the
 * filter must cover that architecture as well as the native one. */
static long i386_call(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}
#endif

/* The attempt's return value: < 0 failed with errno, else succeeded. */
static long attempt(const char *name) {
    char buffer[64];
    if (!strcmp(name, "getpid")) return getpid();
    if (!strcmp(name, "socket_inet")) return socket(AF_INET, SOCK_STREAM, 0);
    if (!strcmp(name, "pidfd_open")) return syscall(SYS_pidfd_open, 1, 0);
    if (!strcmp(name, "fork")) {
        pid_t child = fork();
        if (child == 0) _exit(0);
        if (child > 0) waitpid(child, NULL, 0);
        return child;
    }
    if (!strcmp(name, "ptrace")) return ptrace(PTRACE_ATTACH, 1, 0, 0);
    if (!strcmp(name, "pidfd_getfd")) {
        long pidfd = syscall(SYS_pidfd_open, 1, 0);
        if (pidfd < 0) return pidfd;
        return syscall(SYS_pidfd_getfd, pidfd, 3, 0);
    }
    if (!strcmp(name, "kcmp")) return syscall(SYS_kcmp, getpid(), 1, 0 /* KCMP_FILE */, 0, 3);
    if (!strcmp(name, "process_madvise")) {
        long pidfd = syscall(SYS_pidfd_open, 1, 0);
        struct iovec iov = {buffer, sizeof buffer};
        if (pidfd < 0) return pidfd;
        return syscall(SYS_process_madvise, pidfd, &iov, 1, 20 /* MADV_COLD */, 0);
    }
    if (!strcmp(name, "process_vm_readv")) {
        struct iovec local = {buffer, sizeof buffer}, remote = {(void *)0x400000, 8};
        return process_vm_readv(1, &local, 1, &remote, 1, 0);
    }
    if (!strcmp(name, "vsock")) return socket(AF_VSOCK, SOCK_STREAM, 0);
    if (!strcmp(name, "vsock_pair")) {
        int pair[2];
        return socketpair(AF_VSOCK, SOCK_STREAM, 0, pair);
    }
    if (!strcmp(name, "unshare_user")) return unshare(CLONE_NEWUSER);
    if (!strcmp(name, "unshare_mount")) return unshare(CLONE_NEWNS);
    if (!strcmp(name, "clone_newuser")) {
        long child = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (child == 0) _exit(0);
        if (child > 0) waitpid(child, NULL, 0);
        return child;
    }
    if (!strcmp(name, "clone3")) {
        unsigned long long args[11] = {0};
        args[4] = SIGCHLD; /* exit_signal */
        long child = syscall(SYS_clone3, args, sizeof args);
        if (child == 0) _exit(0);
        if (child > 0) waitpid(child, NULL, 0);
        return child;
    }
    if (!strcmp(name, "setns")) {
        int fd = open("/proc/self/ns/net", O_RDONLY);
        if (fd < 0) return fd;
        return setns(fd, 0);
    }
    if (!strcmp(name, "mount")) return mount("none", "/tmp", "tmpfs", 0, NULL);
    if (!strcmp(name, "open_tree")) return syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* CLONE */);
    if (!strcmp(name, "bpf")) return syscall(SYS_bpf, 0, NULL, 0);
    if (!strcmp(name, "perf_event_open")) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, 0);
    if (!strcmp(name, "io_uring_setup")) return syscall(SYS_io_uring_setup, 1, buffer);
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    if (!strcmp(name, "personality")) return personality(ADDR_NO_RANDOMIZE);
    if (!strcmp(name, "personality_query")) return personality(0xffffffff);
    if (!strcmp(name, "open_by_handle_at")) return syscall(SYS_open_by_handle_at, AT_FDCWD, buffer, 0);
    if (!strcmp(name, "init_module")) return syscall(SYS_init_module, buffer, 0, "");
    if (!strcmp(name, "syslog")) return syscall(SYS_syslog, 3, buffer, sizeof buffer);
    if (!strcmp(name, "settimeofday")) return syscall(SYS_settimeofday, NULL, NULL);
    if (!strcmp(name, "sethostname")) return sethostname("x", 1);
#if defined(__x86_64__)
    /* getpid (20) and ptrace (26) by their i386 numbers; getpid with the x32 bit. */
    if (!strcmp(name, "i386_getpid")) return i386_call(20, 0, 0, 0);
    if (!strcmp(name, "i386_ptrace")) return i386_call(26, 0 /* PTRACE_TRACEME */, 0, 0);
    if (!strcmp(name, "x32_getpid")) return syscall(0x40000000L | SYS_getpid);
#endif
    if (!strcmp(name, "proc1_mem")) return open("/proc/1/mem", O_RDWR);
    if (!strcmp(name, "proc1_stdout")) return open("/proc/1/fd/1", O_WRONLY);
    if (!strcmp(name, "proc1_channel")) return open("/proc/1/fd/3", O_RDWR);
    if (!strcmp(name, "proc1_environ")) return open("/proc/1/environ", O_RDONLY);
    errno = EINVAL;
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long result = attempt(argv[i]);
        if (result == -2 && errno == EINVAL) {
            printf("%s unknown-attempt\n", argv[i]);
        } else if (result < 0) {
            printf("%s %s\n", argv[i], errno_name(errno));
        } else {
            printf("%s ok\n", argv[i]);
        }
    }
    return 0;
}
