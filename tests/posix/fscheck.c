/*
 * fscheck: POSIX file-system semantics, checked call by call (in the spirit of pjdfstest, which
 * this machine cannot fetch). Run as root inside a sandbox, in a directory of the file system
 * under test (argv[1]); prints TAP ("ok N - what" / "not ok N - what: detail") and exits 1 if
 * any check failed. Built statically by the e2e test (tests/tests/posix.rs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

static int checks, failures;

static void check(int ok, const char *what, const char *detail) {
    checks++;
    if (ok) {
        printf("ok %d - %s\n", checks, what);
    } else {
        failures++;
        printf("not ok %d - %s: %s (errno %d %s)\n", checks, what, detail, errno, strerror(errno));
    }
}

/* The call failed with exactly `want`. */
static void fails_with(int ret, int want, const char *what) {
    int got = errno;
    checks++;
    if (ret == -1 && got == want) {
        printf("ok %d - %s\n", checks, what);
    } else {
        failures++;
        printf("not ok %d - %s: returned %d, errno %d (%s), wanted %s\n", checks, what, ret, got,
               strerror(got), strerror(want));
    }
}

static mode_t mode_of(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return (mode_t)-1;
    return st.st_mode;
}

static off_t size_of(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return -1;
    return st.st_size;
}

static nlink_t links_of(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    return st.st_nlink;
}

int main(int argc, char **argv) {
    if (argc != 2 || chdir(argv[1]) != 0) {
        fprintf(stderr, "usage: fscheck DIR (an existing, writable directory)\n");
        return 2;
    }
    char dir[64];
    snprintf(dir, sizeof dir, "fscheck.%d", (int)getpid());
    check(mkdir(dir, 0755) == 0, "mkdir makes a directory", dir);
    check(chdir(dir) == 0, "chdir into it", dir);
    umask(022);

    /* open, create, exclusive create */
    int fd = open("f", O_CREAT | O_WRONLY, 0644);
    check(fd >= 0, "open O_CREAT makes a file", "f");
    check(S_ISREG(mode_of("f")) && (mode_of("f") & 07777) == 0644, "new file mode 0644 under umask 022", "mode");
    fails_with(open("f", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST, "O_EXCL on an existing file: EEXIST");
    fails_with(open("missing", O_RDONLY), ENOENT, "open of a missing file: ENOENT");
    fails_with(open("f/x", O_RDONLY), ENOTDIR, "a file as a directory: ENOTDIR");

    /* write, read back, sizes, holes, O_APPEND, O_TRUNC */
    check(write(fd, "hello", 5) == 5, "write 5 bytes", "write");
    check(size_of("f") == 5, "size is 5 after the write", "size");
    check(pwrite(fd, "!", 1, 1 << 20) == 1, "pwrite past the end makes a hole", "pwrite");
    check(size_of("f") == (1 << 20) + 1, "size grows to the hole's end", "size");
    close(fd);
    char buf[16] = {0};
    fd = open("f", O_RDONLY);
    check(fd >= 0 && read(fd, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0, "read back what was written", buf);
    check(pread(fd, buf, 1, 4096) == 1 && buf[0] == 0, "a hole reads as zeros", "pread");
    close(fd);
    fd = open("f", O_WRONLY | O_APPEND);
    check(fd >= 0 && write(fd, "ab", 2) == 2 && size_of("f") == (1 << 20) + 3, "O_APPEND writes at the end", "append");
    close(fd);
    fd = open("f", O_WRONLY | O_TRUNC);
    check(fd >= 0 && size_of("f") == 0, "O_TRUNC empties the file", "trunc");
    close(fd);
    check(truncate("f", 1000) == 0 && size_of("f") == 1000, "truncate grows", "truncate");
    check(truncate("f", 10) == 0 && size_of("f") == 10, "truncate shrinks", "truncate");
    fd = open("f", O_RDWR);
    check(fd >= 0 && ftruncate(fd, 3) == 0 && size_of("f") == 3, "ftruncate", "ftruncate");
    check(fsync(fd) == 0, "fsync", "fsync");
    check(fdatasync(fd) == 0, "fdatasync", "fdatasync");
    close(fd);
    fails_with(truncate("f", -1), EINVAL, "truncate to a negative size: EINVAL");

    /* mode, ownership, times */
    check(chmod("f", 0600) == 0 && (mode_of("f") & 07777) == 0600, "chmod 0600", "chmod");
    check(chmod("f", 04755) == 0 && (mode_of("f") & 07777) == 04755, "chmod keeps setuid for root", "chmod");
    check(chown("f", 1000, 1000) == 0, "chown to 1000:1000", "chown");
    struct stat st;
    check(lstat("f", &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000, "owner is 1000:1000", "stat");
    check((mode_of("f") & 04000) == 0, "chown clears setuid", "mode");
    check(chown("f", 0, 0) == 0, "chown back to root", "chown");
    struct timeval times[2] = {{1000000000, 0}, {1100000000, 0}};
    check(utimes("f", times) == 0, "utimes", "utimes");
    check(lstat("f", &st) == 0 && st.st_atime == 1000000000 && st.st_mtime == 1100000000, "atime and mtime as set", "stat");
    struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    check(utimensat(AT_FDCWD, "f", now, 0) == 0, "utimensat UTIME_NOW/UTIME_OMIT", "utimensat");
    check(lstat("f", &st) == 0 && st.st_atime > 1100000000 && st.st_mtime == 1100000000, "atime now, mtime kept", "stat");

    /* hard links */
    check(link("f", "g") == 0, "link", "link");
    check(links_of("f") == 2 && links_of("g") == 2, "both names count two links", "nlink");
    struct stat a, b;
    check(lstat("f", &a) == 0 && lstat("g", &b) == 0 && a.st_ino == b.st_ino, "both names are one inode", "ino");
    fails_with(link("f", "g"), EEXIST, "link onto an existing name: EEXIST");
    check(unlink("g") == 0 && links_of("f") == 1, "unlink drops a link", "unlink");

    /* symbolic links */
    check(symlink("f", "s") == 0, "symlink", "symlink");
    check(S_ISLNK(mode_of("s")), "lstat sees a link", "lstat");
    char target[PATH_MAX] = {0};
    check(readlink("s", target, sizeof target - 1) == 1 && strcmp(target, "f") == 0, "readlink", target);
    check(stat("s", &st) == 0 && S_ISREG(st.st_mode), "stat follows the link", "stat");
    fails_with(open("s", O_RDONLY | O_NOFOLLOW), ELOOP, "O_NOFOLLOW on a link: ELOOP");
    check(symlink("nowhere", "dangling") == 0 && access("dangling", F_OK) == -1, "a dangling link", "symlink");
    fails_with(symlink("f", "s"), EEXIST, "symlink onto an existing name: EEXIST");
    check(unlink("s") == 0 && unlink("dangling") == 0 && access("f", F_OK) == 0, "unlinking links leaves the target", "unlink");

    /* rename */
    check(rename("f", "h") == 0 && access("f", F_OK) == -1 && access("h", F_OK) == 0, "rename", "rename");
    fd = open("i", O_CREAT | O_WRONLY, 0644);
    close(fd);
    check(rename("h", "i") == 0 && access("h", F_OK) == -1, "rename over an existing file replaces it", "rename");
    check(mkdir("d", 0755) == 0, "mkdir d", "mkdir");
    fails_with(rename("i", "d"), EISDIR, "rename a file over a directory: EISDIR");
    check(mkdir("e", 0755) == 0 && rename("e", "d") == 0 && access("e", F_OK) == -1, "rename a directory over an empty one", "rename");
    check(mkdir("d/sub", 0755) == 0, "mkdir d/sub", "mkdir");
    fails_with(rename("d", "d/sub/inside"), EINVAL, "rename a directory into itself: EINVAL");
    check(renameat2(AT_FDCWD, "i", AT_FDCWD, "j", RENAME_NOREPLACE) == 0, "renameat2 RENAME_NOREPLACE", "renameat2");
    fd = open("k", O_CREAT | O_WRONLY, 0644);
    close(fd);
    fails_with(renameat2(AT_FDCWD, "j", AT_FDCWD, "k", RENAME_NOREPLACE), EEXIST, "RENAME_NOREPLACE onto a name: EEXIST");
    check(renameat2(AT_FDCWD, "j", AT_FDCWD, "k", RENAME_EXCHANGE) == 0, "renameat2 RENAME_EXCHANGE", "renameat2");

    /* directories */
    fails_with(mkdir("d", 0755), EEXIST, "mkdir of an existing name: EEXIST");
    fails_with(rmdir("d"), ENOTEMPTY, "rmdir of a non-empty directory: ENOTEMPTY");
    fails_with(unlink("d"), EISDIR, "unlink of a directory: EISDIR");
    fails_with(rmdir("k"), ENOTDIR, "rmdir of a file: ENOTDIR");
    check(links_of("d") == 3, "a directory with one subdirectory has three links", "nlink");
    check(rmdir("d/sub") == 0 && rmdir("d") == 0, "rmdir", "rmdir");
    check(mkdir("list", 0755) == 0, "mkdir list", "mkdir");
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "list/%d", i);
        fd = open(name, O_CREAT | O_WRONLY, 0644);
        close(fd);
    }
    DIR *listing = opendir("list");
    int entries = 0;
    struct dirent *entry;
    while (listing && (entry = readdir(listing))) entries++;
    if (listing) closedir(listing);
    check(entries == 102, "readdir lists 100 files, . and ..", "readdir");

    /* special files: fifos only (device nodes are not the sandbox's to make) */
    check(mkfifo("fifo", 0644) == 0 && S_ISFIFO(mode_of("fifo")), "mkfifo", "mkfifo");
    fails_with(mknod("blk", S_IFBLK | 0600, makedev(7, 0)), EPERM, "mknod of a block device: EPERM");

    /* extended attributes: user.* round-trips where the file system has them */
    int set = setxattr("k", "user.msb", "v", 1, 0);
    if (set == -1 && errno == ENOTSUP) {
        check(1, "user xattrs: not supported, said so (ENOTSUP)", "setxattr");
    } else {
        char v[4] = {0};
        check(set == 0 && getxattr("k", "user.msb", v, sizeof v) == 1 && v[0] == 'v', "user xattr round-trips", "xattr");
    }

    /* permissions as an ordinary user */
    fd = open("private", O_CREAT | O_WRONLY, 0600);
    close(fd);
    check(setresgid(1000, 1000, 1000) == 0 && setresuid(1000, 1000, 1000) == 0, "drop to uid 1000", "setresuid");
    fails_with(open("private", O_RDONLY), EACCES, "uid 1000 reads a 0600 root file: EACCES");
    fails_with(chown("k", 1000, 1000), EPERM, "uid 1000 chowns a root file: EPERM");
    fails_with(mkdir("list/x", 0755), EACCES, "uid 1000 writes into a root 0755 directory: EACCES");

    struct statvfs vfs;
    check(statvfs(".", &vfs) == 0 && vfs.f_bsize > 0, "statvfs", "statvfs");
    printf("1..%d\n# %d checks, %d failed\n", checks, checks, failures);
    return failures ? 1 : 0;
}
