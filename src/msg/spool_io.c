/* spool_io.c — the spool's I/O threads and group commit (see spool_io.h).
 *
 * A job moves through three lists, all under one mutex:
 *   todo    staged on the loop thread; a thread fsyncs its two files
 *   synced  both files on disk; waiting for the next directory commit
 *   done    renamed and the directory synced (or failed); the loop thread
 *           collects it after a wake-up through an eventfd
 * One thread at a time commits: it takes the whole synced list, renames
 * every file and fsyncs each directory once. While it waits for the disk
 * the other threads go on syncing files, so the next commit is larger.
 *
 * The loop thread builds a job's item (spool_item_new copies what the
 * files will hold) and alone touches its done/arg/forgotten fields; the
 * I/O threads write, sync and rename, and set err, until it is on done.
 * The loop never waits for the disk: every open, write and fsync of the
 * spool files runs here. */
#include "msg/spool_io.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/thread.h"
#include "msg/envelope.h"
#include "msg/spool.h"

#ifdef KASI_TEST_HOOKS
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#endif

/* Threads, started on demand (one more whenever a file waits and none is
 * idle): the file system joins concurrent fsyncs into one journal commit,
 * so the rate grows with the number of fsyncs in flight. Each file of a
 * message is synced by its own thread. */
#define SIO_MAX_THREADS 32

struct spool_io_job {
    struct spool_io_job *next;
    struct spool_item *item;    /* what to write (read-only on the threads) */
    int claimed, synced;        /* files taken by a thread / synced */
    int err;                    /* 0 or errno (I/O threads) */
    spool_io_done_fn done;      /* loop thread */
    void *arg;
    int forgotten;
};

struct sio_list { struct spool_io_job *head, **tail; };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sio_list todo, synced, done;
    int committing;             /* one thread is in sio_commit */
    int efd;                    /* eventfd: done has jobs */
    struct event *ev;
    struct event_base *base;
    int started;
    int nthreads;               /* threads started */
    int idle, starting;         /* waiting for work / not yet running */
    int unclaimed;              /* files on todo no thread has taken */
} sio = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .efd = -1 };

/* ------------------------------------------------------------ lists */

static void list_init(struct sio_list *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void list_push(struct sio_list *l, struct spool_io_job *j)
{
    j->next = NULL;
    *l->tail = j;
    l->tail = &j->next;
}

static void list_splice(struct sio_list *l, struct spool_io_job *first)
{
    while (first) {
        struct spool_io_job *n = first->next;
        list_push(l, first);
        first = n;
    }
}

/* Take the whole list. */
static struct spool_io_job *list_take(struct sio_list *l)
{
    struct spool_io_job *h = l->head;
    list_init(l);
    return h;
}

/* ------------------------------------------------------ I/O threads */

#ifdef KASI_TEST_HOOKS
/* Test builds: while the file named by KASI_TEST_SPOOL_STALL exists, the
 * first thread that creates NAME.waiting holds its job before the fsync
 * (a stalled disk); the others pass. Bounded to one minute. */
static void sio_test_stall(void)
{
    const char *path = getenv("KASI_TEST_SPOOL_STALL");
    struct stat st;
    if (!path || stat(path, &st) < 0)
        return;
    char mark[4096];
    snprintf(mark, sizeof mark, "%s.waiting", path);
    int fd = open(mark, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    close(fd);
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    for (int i = 0; i < 6000 && stat(path, &st) == 0; i++)
        nanosleep(&ts, NULL);
}
#else
static void sio_test_stall(void) {}
#endif

/* Write and fsync one file of j. 0 or errno. */
static int sio_sync_file(struct spool_io_job *j, int file)
{
    sio_test_stall();
    int fd = spool_item_write(j->item, file);
    if (fd < 0)
        return errno;
    int err = fsync(fd) < 0 ? errno : 0;
    close(fd);
    return err;
}

/* Rename every job's files, then fsync each directory once. */
static void sio_commit(struct spool_io_job *batch)
{
    for (struct spool_io_job *j = batch; j; j = j->next)
        if (spool_item_publish(j->item, SPOOL_EML) < 0 ||
            spool_item_publish(j->item, SPOOL_ENV) < 0)
            j->err = errno;
    for (struct spool_io_job *j = batch; j; j = j->next) {
        const char *dir = j->item->dir;
        int seen = j != batch && strcmp(batch->item->dir, dir) == 0;   /* the usual case */
        for (struct spool_io_job *k = batch; k != j && !seen; k = k->next)
            seen = strcmp(k->item->dir, dir) == 0;
        if (seen)
            continue;
        int err = spool_sync_dir(dir) < 0 ? errno : 0;
        for (struct spool_io_job *k = j; k && err; k = k->next)
            if (strcmp(k->item->dir, dir) == 0 && k->err == 0)
                k->err = err;
    }
}

/* Hand finished jobs to the loop thread. Called with the mutex held. */
static void sio_finish(struct spool_io_job *batch)
{
    int was_empty = sio.done.head == NULL;
    list_splice(&sio.done, batch);
    uint64_t one = 1;
    if (was_empty && write(sio.efd, &one, sizeof one) < 0)
        abort();                /* eventfd never fails below 2^64-1 */
}

/* Take the next file to sync: its job, and which file in i. Mutex held. */
static struct spool_io_job *sio_claim(int *i)
{
    struct spool_io_job *j = sio.todo.head;
    *i = j->claimed++;
    sio.unclaimed--;
    if (j->claimed == 2) {
        sio.todo.head = j->next;
        if (!sio.todo.head)
            sio.todo.tail = &sio.todo.head;
    }
    return j;
}

/* A file of j is synced (err 0) or failed. Mutex held. */
static void sio_file_done(struct spool_io_job *j, int err)
{
    if (err && !j->err)
        j->err = err;
    if (++j->synced < 2)
        return;
    if (j->err) {
        j->next = NULL;
        sio_finish(j);
        return;
    }
    list_push(&sio.synced, j);
    if (!sio.committing)        /* else the committer looks when done */
        pthread_cond_signal(&sio.cv);
}

static void sio_commit_round(void)
{
    struct spool_io_job *batch = list_take(&sio.synced);
    sio.committing = 1;
    pthread_mutex_unlock(&sio.mu);
    sio_commit(batch);
    pthread_mutex_lock(&sio.mu);
    sio.committing = 0;
    sio_finish(batch);
    if (sio.synced.head)        /* synced meanwhile: the next commit */
        pthread_cond_signal(&sio.cv);
}

static void *sio_thread(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&sio.mu);
    sio.starting--;
    for (;;) {
        if (sio.synced.head && !sio.committing) {
            sio_commit_round();
        } else if (sio.todo.head) {
            int file;
            struct spool_io_job *j = sio_claim(&file);
            pthread_mutex_unlock(&sio.mu);
            int err = sio_sync_file(j, file);
            pthread_mutex_lock(&sio.mu);
            sio_file_done(j, err);
        } else {
            sio.idle++;
            pthread_cond_wait(&sio.cv, &sio.mu);
            sio.idle--;
        }
    }
    return NULL;
}

/* Start threads until every unclaimed file has one. Mutex held. 0, or
 * an errno when not even one thread runs. */
static int sio_grow(void)
{
    while (sio.idle + sio.starting < sio.unclaimed && sio.nthreads < SIO_MAX_THREADS) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        int rc = thread_start(&th, &at, sio_thread, NULL);
        pthread_attr_destroy(&at);
        if (rc != 0)
            return sio.nthreads > 0 ? 0 : rc;
        sio.nthreads++;
        sio.starting++;
    }
    return 0;
}

/* -------------------------------------------------------- loop side */

static void sio_job_free(struct spool_io_job *j)
{
    spool_item_free(j->item);
    free(j);
}

static void sio_deliver(struct spool_io_job *j)
{
    if (j->err)
        spool_item_discard(j->item);
    if (!j->forgotten)
        j->done(j->arg, j->err);
    sio_job_free(j);
}

static void sio_wakeup_cb(evutil_socket_t fd, short what, void *unused)
{
    (void)what;
    (void)unused;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
        log_msg(LOG_LVL_ERROR, "spool I/O wake-up: %s", strerror(errno));
    pthread_mutex_lock(&sio.mu);
    struct spool_io_job *j = list_take(&sio.done);
    pthread_mutex_unlock(&sio.mu);
    while (j) {
        struct spool_io_job *n = j->next;
        sio_deliver(j);
        j = n;
    }
}

/* The threads and the wake-up event, at the first write. 0 or -1. */
static int sio_start(struct event_base *base, char *err, size_t errlen)
{
    if (sio.started && sio.base != base)
        snprintf(err, errlen, "spool I/O: a second event loop");
    if (sio.started)
        return sio.base == base ? 0 : -1;
    list_init(&sio.todo);
    list_init(&sio.synced);
    list_init(&sio.done);
    sio.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sio.ev = sio.efd >= 0 ? event_new(base, sio.efd, EV_READ | EV_PERSIST, sio_wakeup_cb, NULL)
                          : NULL;
    if (!sio.ev || event_add(sio.ev, NULL) < 0)
        goto fail;
    sio.base = base;
    sio.started = 1;
    return 0;
fail:
    snprintf(err, errlen, "spool I/O threads: %s", strerror(errno));
    if (sio.ev)
        event_free(sio.ev);
    if (sio.efd >= 0)
        close(sio.efd);
    sio.ev = NULL;
    sio.efd = -1;
    return -1;
}

struct spool_io_job *spool_io_write(struct event_base *base, const char *dir,
                                    const struct conn *c, struct txn *t,
                                    spool_io_done_fn done, void *arg,
                                    char *err, size_t errlen)
{
    if (sio_start(base, err, errlen) < 0)
        return NULL;
    struct spool_io_job *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(err, errlen, "spool: out of memory");
        return NULL;
    }
    j->item = spool_item_new(dir, c, t, err, errlen);
    if (!j->item) {
        free(j);
        return NULL;
    }
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&sio.mu);
    list_push(&sio.todo, j);
    sio.unclaimed += 2;
    int rc = sio_grow();
    if (rc != 0) {              /* no thread at all: take the job back */
        sio.todo.head = NULL;
        sio.todo.tail = &sio.todo.head;
        sio.unclaimed = 0;
    }
    pthread_cond_signal(&sio.cv);   /* one thread per file */
    pthread_cond_signal(&sio.cv);
    pthread_mutex_unlock(&sio.mu);
    if (rc != 0) {
        sio_job_free(j);
        snprintf(err, errlen, "spool I/O threads: %s", strerror(rc));
        return NULL;
    }
    return j;
}

void spool_io_forget(struct spool_io_job *j)
{
    j->forgotten = 1;
}
