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

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    test_memory_then_spill();
    test_spill_fails();
    rmdir(dir);
    return done_testing();
}
