/* msg_store.c — unit tests of the message store: appends below and across
 * the memory limit, reads by offset on either side of the spill and across
 * it, peek only while the bytes are in RAM, the copy to a file descriptor,
 * and the failed state when the spill file cannot be made. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msg/msg_store.h"
#include "tap.h"

static char dir[] = "/tmp/kasi-unit-store-XXXXXX";

static void fill(char *buf, size_t n, size_t from)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (from + i) % 26);
}

static int same_bytes(struct msg_store *st, size_t off, size_t n)
{
    char *got = malloc(n), *want = malloc(n);
    size_t have = 0;
    ssize_t r = 1;
    fill(want, n, off);
    while (have < n && r > 0)       /* reads may stop where RAM and file meet */
        if ((r = msg_store_read(st, off + have, got + have, n - have)) > 0)
            have += (size_t)r;
    int ok_ = have == n && memcmp(got, want, n) == 0;
    free(got);
    free(want);
    return ok_;
}

static void test_memory_then_spill(void)
{
    struct msg_store *st = msg_store_new(100, dir);
    char buf[250];
    fill(buf, 60, 0);
    is_int(msg_store_append(st, buf, 60), 0, "60 bytes in memory");
    ok(msg_store_peek(st, 10, 20) != NULL, "peek while in RAM");
    ok(same_bytes(st, 0, 60), "read from RAM");
    fill(buf, 250, 60);
    is_int(msg_store_append(st, buf, 250), 0, "past the limit: spills");
    is_int((long long)msg_store_size(st), 310, "size counts both sides");
    ok(msg_store_peek(st, 0, 10) == NULL, "no peek once spilled");
    ok(same_bytes(st, 0, 310), "read across the spill point");
    ok(same_bytes(st, 55, 10), "a read that straddles the old limit");
    ok(same_bytes(st, 300, 10), "a read at the end");
    is_int(msg_store_read(st, 310, buf, 10), 0, "0 at the end");
    char path[64];
    snprintf(path, sizeof path, "%s/copy", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    is_int(msg_store_copy_to_fd(st, 100, fd), 0, "copy from offset 100");
    is_int(lseek(fd, 0, SEEK_END), 210, "the copy has the rest");
    char head[5];
    pread(fd, head, 5, 0);
    fill(buf, 5, 100);
    ok(memcmp(head, buf, 5) == 0, "the copy starts at the offset");
    close(fd);
    unlink(path);
    ok(!msg_store_failed(st), "not failed");
    msg_store_free(st);
}

static void test_spill_fails(void)
{
    struct msg_store *st = msg_store_new(8, "/nonexistent/kasi-spill");
    char buf[32];
    fill(buf, 32, 0);
    is_int(msg_store_append(st, buf, 8), 0, "within the limit: fine");
    is_int(msg_store_append(st, buf, 32), -1, "the spill cannot be made: -1");
    ok(msg_store_failed(st), "failed");
    is_int(msg_store_append(st, buf, 1), -1, "stays failed");
    msg_store_free(st);
}

/* Line-starting dots are noted across appends; too many: "dense". */
static void test_dots(void)
{
    struct msg_store *st = msg_store_new(16, dir);
    msg_store_append(st, ".a\r\n", 4);        /* 0: at the start */
    msg_store_append(st, "b.c\r", 4);          /* a dot inside a line */
    msg_store_append(st, "\n", 1);
    msg_store_append(st, ".", 1);               /* 9: its line began in the last append */
    msg_store_append(st, "x\r\n..\r\n", 7);   /* 13 (and 14 is not at a line start) */
    size_t n, fd_len;
    const size_t *d = msg_store_dots(st, &n);
    ok(d && n == 3 && d[0] == 0 && d[1] == 9 && d[2] == 13, "dots at 0, 9 and 13");
    ok(msg_store_spilled(st, &fd_len) >= 0 && fd_len > 0, "spilled past 16 bytes");
    msg_store_free(st);
    st = msg_store_new(1 << 20, dir);
    is_int(msg_store_spilled(st, &fd_len), -1, "in memory: no spill file");
    ok(msg_store_dots(st, &n) != NULL && n == 0, "no dots yet: an empty list");
    for (int i = 0; i < 70000; i++)
        msg_store_append(st, ".\r\n", 3);
    ok(msg_store_dots(st, &n) == NULL, "70,000 dots: too many to list");
    msg_store_free(st);
}

/* A snapshot outlives its store and holds the same bytes. */
static void test_snapshot(void)
{
    struct msg_store *st = msg_store_new(100, dir);
    char buf[400], out[400];
    fill(buf, sizeof buf, 0);
    msg_store_append(st, buf, 150);             /* spills */
    msg_store_append(st, buf + 150, 50);        /* stays in the write buffer */
    struct msg_snap sn;
    is_int(msg_store_snapshot(st, 10, &sn), 0, "snapshot from offset 10");
    msg_store_free(st);                         /* the snapshot lives on */
    char path[64];
    snprintf(path, sizeof path, "%s/snap", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    is_int(msg_snap_write_fd(&sn, fd), 0, "written after the store is gone");
    is_int(pread(fd, out, sizeof out, 0), 190, "190 bytes");
    ok(memcmp(out, buf + 10, 190) == 0, "the same bytes");
    close(fd);
    unlink(path);
    msg_snap_free(&sn);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    test_memory_then_spill();
    test_spill_fails();
    test_dots();
    test_snapshot();
    rmdir(dir);
    return done_testing();
}
