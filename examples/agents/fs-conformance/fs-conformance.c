/* fs-conformance: an ordinary C program (wasi-libc, standard file APIs only) that checks the file system
 * the executor gives an agent granted `scratch`: relative and absolute paths at `/`, `/scratch`, create,
 * write, seek, read back, stat, truncate, readdir, rename, unlink, mkdir/rmdir, symlinks inside, and the
 * refusals a program expects (`..` out of the root, a symlink pointing out, an absolute host path).
 *
 * Prints one line per check, "<check> ok" or "<check> FAIL <detail>", then "passed N/M", and exits 0
 * only if every check passed. The same output under bare wasmtime (a temporary directory preopened at
 * `/` and its `scratch` subdirectory at `/scratch`) is the reference tests compare against. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int checks, passed;

static void check(const char *name, int ok, const char *detail) {
    checks++;
    if (ok) {
        passed++;
        printf("%s ok\n", name);
    } else {
        printf("%s FAIL %s (errno %d)\n", name, detail, errno);
    }
}

/* A refusal: passes when `refused` holds; the line names the errno, which the reference run must match. */
static void check_refused(const char *name, int refused, const char *detail) {
    int saved = errno;
    checks++;
    if (refused) {
        passed++;
        printf("%s ok (errno %s)\n", name, strerror(saved));
    } else {
        printf("%s FAIL %s\n", name, detail);
    }
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    size_t n = fwrite(text, 1, strlen(text), f);
    return fclose(f) == 0 && n == strlen(text);
}

static int read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return (int)n;
}

static int dir_has(const char *dir, const char *name) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) found |= strcmp(e->d_name, name) == 0;
    closedir(d);
    return found;
}

int main(void) {
    char buf[256];
    struct stat st;

    check("empty-at-start", access("note.txt", F_OK) != 0 && errno == ENOENT, "note.txt exists before the run wrote it");
    check("relative-create", write_file("note.txt", "hello, file\n"), "fopen(\"note.txt\", \"w\")");
    check("absolute-same-file", read_file("/note.txt", buf, sizeof buf) == 12 && strcmp(buf, "hello, file\n") == 0,
          "/note.txt is not note.txt");

    int fd = open("data.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
    check("open-rdwr", fd >= 0, "open(data.bin, O_RDWR|O_CREAT)");
    check("write", write(fd, "0123456789", 10) == 10, "write 10 bytes");
    check("seek-set", lseek(fd, 3, SEEK_SET) == 3, "lseek(3, SEEK_SET)");
    check("read-after-seek", read(fd, buf, 4) == 4 && memcmp(buf, "3456", 4) == 0, "read 4 bytes at 3");
    check("seek-end", lseek(fd, 0, SEEK_END) == 10, "lseek(0, SEEK_END)");
    check("ftruncate", ftruncate(fd, 4) == 0 && fstat(fd, &st) == 0 && st.st_size == 4, "ftruncate to 4");
    check("pwrite-past-end", pwrite(fd, "Z", 1, 8) == 1 && fstat(fd, &st) == 0 && st.st_size == 9, "pwrite at 8");
    check("close", close(fd) == 0, "close");
    check("stat-regular", stat("data.bin", &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 9, "stat data.bin");

    check("mkdir", mkdir("sub", 0755) == 0, "mkdir sub");
    check("stat-dir", stat("sub", &st) == 0 && S_ISDIR(st.st_mode), "stat sub");
    check("nested-create", write_file("sub/inner.txt", "inner"), "fopen sub/inner.txt");
    check("readdir-root", dir_has(".", "note.txt") && dir_has("/", "sub") && dir_has("/", "scratch"), "readdir /");
    check("readdir-sub", dir_has("sub", "inner.txt"), "readdir sub");
    check("rename", rename("sub/inner.txt", "moved.txt") == 0 && access("sub/inner.txt", F_OK) != 0 &&
                        read_file("moved.txt", buf, sizeof buf) == 5, "rename sub/inner.txt moved.txt");
    check("rmdir", rmdir("sub") == 0 && access("sub", F_OK) != 0, "rmdir sub");
    check("unlink", unlink("moved.txt") == 0 && access("moved.txt", F_OK) != 0 && errno == ENOENT, "unlink moved.txt");

    check("scratch-dir", write_file("/scratch/s.txt", "s") && dir_has("scratch", "s.txt"), "/scratch/s.txt");

    check("symlink-inside", symlink("note.txt", "link") == 0 && read_file("link", buf, sizeof buf) == 12,
          "symlink link -> note.txt");
    check("readlink", readlink("link", buf, sizeof buf) == 8 && memcmp(buf, "note.txt", 8) == 0, "readlink link");
    check("unlink-symlink", unlink("link") == 0 && access("note.txt", F_OK) == 0, "unlink link");

    /* Refusals: nothing outside the run's own directory can be named. */
    errno = 0;
    check_refused("dotdot-refused", fopen("../escape.txt", "w") == NULL && errno != 0, "created ../escape.txt");
    errno = 0;
    check_refused("scratch-dotdot-refused", fopen("/scratch/../../escape.txt", "w") == NULL && errno != 0,
          "created /scratch/../../escape.txt");
    errno = 0;
    check_refused("host-path-absent", fopen("/etc/passwd", "r") == NULL && errno == ENOENT, "/etc/passwd is readable");
    errno = 0;
    int made = symlink("/etc/passwd", "out") == 0;
    check_refused("symlink-out-refused", !made || (fopen("out", "r") == NULL && errno != 0), "read through out -> /etc/passwd");
    if (made) unlink("out");
    errno = 0;
    made = symlink("../../../../etc/passwd", "up") == 0;
    check_refused("symlink-up-refused", !made || (fopen("up", "r") == NULL && errno != 0), "read through up -> ../..");
    if (made) unlink("up");

    printf("passed %d/%d\n", passed, checks);
    return passed == checks ? 0 : 1;
}
