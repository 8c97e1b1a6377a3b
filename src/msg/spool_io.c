/* spool_io.c — the spool's I/O threads and group commit (see spool_io.h).
 *
 * A job moves through four lists, all under one mutex:
 *   todo     staged on the loop thread; a thread writes its two files
 *   written  both files written (unnamed, or under temporary names),
 *            not yet on disk
 *   durable  their data on disk; waiting to be named
 *   done     named and on disk (or failed); the loop thread collects
 *            it after a wake-up through an eventfd
 * One thread at a time commits, in rounds. A round names every durable
 * job's files, then syncs the file system once (syncfs): that one sync
 * puts this round's renames and the next round's file data on disk. So a
 * message waits for two syncs (its data before its name, or a crash
 * could leave a named file without its bytes), and every sync serves all
 * the messages that arrived while the last one ran.
 *
 * Errors: the kernel reports a failed writeback to the next syncfs of the
 * file system, whichever file it came from. So a failed sync fails every
 * job whose files were being written or synced by then (sync_errors
 * counts them; a job notes the count when its writing starts).
 *
 * The loop thread builds a job's item (spool_item_new copies what the
 * files will hold) and alone touches its done/arg/forgotten fields; the
 * I/O threads write, sync and rename, and set err, until it is on done.
 * The loop never waits for the disk: every open, write and sync of the
 * spool files runs here. */
#include "msg/spool_io.h"

#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <time.h>
#endif

/* Threads, started on demand (one more whenever a file waits and none is
 * idle); one of them at a time runs a commit round. Writes without a sync
 * are short: a few threads keep up, and more only wake each other. */
#define SIO_MAX_THREADS 8

struct spool_io_job {
    struct spool_io_job *next;
    struct spool_item *item;    /* what to write (read-only on the threads) */
    struct sio_dir *dir;        /* its directory (dir->fd: what syncfs is called on) */
    int fd[2];                  /* its files, open until named */
    int tmpfile;                /* made unnamed (see sio_dir) */
    unsigned errs_seen;         /* sync_errors when its writing began */
    int err;                    /* 0 or errno (I/O threads) */
    spool_io_done_fn done;      /* loop thread */
    void *arg;
    int forgotten;
};

struct sio_list { struct spool_io_job *head, **tail; };

/* A spool directory, opened once: a descriptor opened after a writeback
 * error would not hear of it. tmpfile: its files are made unnamed and
 * named by a link (1), under temporary names and renamed (0), or not
 * known yet (-1): the first writer tries (mutex). Unnamed files leave
 * nothing behind after a crash, and making one does not lock the
 * directory: only naming it does, which is short. */
struct sio_dir { struct sio_dir *next; char *path; int fd; int tmpfile; };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sio_list todo, written, durable, done;
    int committing;             /* one thread runs a round */
    unsigned sync_errors;       /* failed syncs so far */
    int efd;                    /* eventfd: done has jobs */
    struct event *ev;
    struct event_base *base;
    int started;
    int nthreads;               /* threads started */
    int idle, starting;         /* waiting for work / not yet running */
    int unclaimed;              /* jobs on todo */
    struct sio_dir *dirs;       /* loop thread */
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
 * first thread that creates NAME.waiting holds its job between its two
 * files (a stalled disk); the others pass. Bounded to one minute. */
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

/* Test builds: while the file named by KASI_TEST_SPOOL_SYNC_FAIL exists,
 * every sync fails with EIO (a disk that lost a write). */
static int sio_test_sync_fail(void)
{
    const char *path = getenv("KASI_TEST_SPOOL_SYNC_FAIL");
    struct stat st;
    return path && stat(path, &st) == 0;
}

/* Test builds: KASI_TEST_SPOOL_NAMED set: files under temporary names,
 * as on a file system without O_TMPFILE. */
static int sio_tmpfile_works(const char *dir)
{
    return getenv("KASI_TEST_SPOOL_NAMED") ? 0 : spool_tmpfile_works(dir);
}
#else
static void sio_test_stall(void) {}
static int sio_test_sync_fail(void) { return 0; }
static int sio_tmpfile_works(const char *dir) { return spool_tmpfile_works(dir); }
#endif

/* Close the files of j still open (named, or given up). */
static void sio_close_files(struct spool_io_job *j)
{
    for (int file = SPOOL_EML; file <= SPOOL_ENV; file++)
        if (j->fd[file] >= 0) {
            close(j->fd[file]);
            j->fd[file] = -1;
        }
}

/* Name the files of j, .env last. 0 or -1 (errno). */
static int sio_name(struct spool_io_job *j)
{
    for (int file = SPOOL_EML; file <= SPOOL_ENV; file++)
        if (spool_item_publish(j->item, file, j->fd[file], j->tmpfile) < 0)
            return -1;
    return 0;
}

/* Name the files of every job of names (their data is on disk). */
static void sio_publish(struct spool_io_job *names)
{
    for (struct spool_io_job *j = names; j; j = j->next) {
        if (!j->err && sio_name(j) < 0)
            j->err = errno;
        sio_close_files(j);
    }
}

/* Is fd already synced by a job of list a before j, or of list b? */
static int sio_seen(const struct spool_io_job *a, const struct spool_io_job *j,
                    const struct spool_io_job *b, int fd)
{
    for (; a && a != j; a = a->next)
        if (a->dir->fd == fd)
            return 1;
    for (; b; b = b->next)
        if (b->dir->fd == fd)
            return 1;
    return 0;
}

/* syncfs once for each file system the jobs of a and b are on. 0, or the
 * errno of a failed sync. */
static int sio_sync(struct spool_io_job *a, struct spool_io_job *b)
{
    int err = sio_test_sync_fail() ? EIO : 0;
    for (int pass = 0; pass < 2; pass++) {
        struct spool_io_job *list = pass ? b : a;
        for (struct spool_io_job *j = list; j; j = j->next)
            if (!sio_seen(list, j, pass ? NULL : b, j->dir->fd) && syncfs(j->dir->fd) < 0)
                err = errno;
    }
    return err;
}

/* Hand finished jobs to the loop thread. Called with the mutex held. */
static void sio_finish(struct spool_io_job *batch)
{
    if (!batch)
        return;
    int was_empty = sio.done.head == NULL;
    list_splice(&sio.done, batch);
    uint64_t one = 1;
    if (was_empty && write(sio.efd, &one, sizeof one) < 0)
        abort();                /* eventfd never fails below 2^64-1 */
}

/* Take the next job to write. Mutex held. */
static struct spool_io_job *sio_claim(void)
{
    struct spool_io_job *j = sio.todo.head;
    sio.todo.head = j->next;
    if (!sio.todo.head)
        sio.todo.tail = &sio.todo.head;
    sio.unclaimed--;
    j->errs_seen = sio.sync_errors;
    return j;
}

/* Both files of j are written, or one failed (err). Mutex held. The
 * thread that wrote it goes on to commit it if no round runs: nobody
 * needs waking. */
static void sio_written(struct spool_io_job *j, int err)
{
    j->err = err;
    if (j->err) {
        sio_close_files(j);
        j->next = NULL;
        sio_finish(j);
        return;
    }
    list_push(&sio.written, j);
}

/* After a round's sync (err): a job fails with it, or with any failed
 * sync since its writing began. Mutex held. */
static void sio_settle(struct spool_io_job *list, int err)
{
    for (struct spool_io_job *j = list; j; j = j->next) {
        if (!j->err && err)
            j->err = err;
        if (!j->err && j->errs_seen != sio.sync_errors)
            j->err = EIO;
    }
}

/* Jobs of data: failed ones to done, the others wait for their rename. */
static void sio_advance(struct spool_io_job *data)
{
    while (data) {
        struct spool_io_job *n = data->next;
        data->next = NULL;
        if (data->err) {
            sio_close_files(data);
            sio_finish(data);
        } else {
            list_push(&sio.durable, data);
        }
        data = n;
    }
}

/* One commit round. Entered and left with the mutex held. */
static void sio_commit_round(void)
{
    struct spool_io_job *data = list_take(&sio.written);
    struct spool_io_job *names = list_take(&sio.durable);
    sio.committing = 1;
    pthread_mutex_unlock(&sio.mu);
    sio_publish(names);
    int err = sio_sync(data, names);
    pthread_mutex_lock(&sio.mu);
    sio.committing = 0;
    if (err)
        sio.sync_errors++;
    sio_settle(names, err);
    sio_settle(data, err);
    sio_finish(names);
    sio_advance(data);
}

/* Write both files of j, unsynced: unnamed where the directory takes
 * it. 0 or errno. */
static int sio_write_files(struct spool_io_job *j, int tmpfile)
{
    j->tmpfile = tmpfile;
    for (int file = SPOOL_EML; file <= SPOOL_ENV; file++) {
        if (file == SPOOL_ENV)
            sio_test_stall();
        j->fd[file] = spool_item_write(j->item, file, tmpfile);
        if (j->fd[file] < 0)
            return errno;
    }
    return 0;
}

/* Write the next job waiting. Entered and left with the mutex held. */
static void sio_write_next(void)
{
    struct spool_io_job *j = sio_claim();
    int tmpfile = j->dir->tmpfile;
    pthread_mutex_unlock(&sio.mu);
    if (tmpfile < 0)
        tmpfile = sio_tmpfile_works(j->dir->path);
    int err = sio_write_files(j, tmpfile);
    pthread_mutex_lock(&sio.mu);
    j->dir->tmpfile = tmpfile;
    sio_written(j, err);
}

static void *sio_thread(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&sio.mu);
    sio.starting--;
    for (;;) {
        if ((sio.written.head || sio.durable.head) && !sio.committing) {
            sio_commit_round();
        } else if (sio.todo.head) {
            sio_write_next();
        } else {
            sio.idle++;
            pthread_cond_wait(&sio.cv, &sio.mu);
            sio.idle--;
        }
    }
    return NULL;
}

/* Start threads until every unclaimed job has one. Mutex held. 0, or
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
    sio_close_files(j);
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
    list_init(&sio.written);
    list_init(&sio.durable);
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

/* Spool directory dir, opened at its first write and kept for the life
 * of the process (a few: spool_dir changes only by a reload). NULL with a
 * reason in err. Loop thread. */
static struct sio_dir *sio_dir_get(const char *dir, char *err, size_t errlen)
{
    for (struct sio_dir *d = sio.dirs; d; d = d->next)
        if (strcmp(d->path, dir) == 0)
            return d;
    struct sio_dir *d = malloc(sizeof *d);
    if (d)
        d->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d && d->fd >= 0 && (d->path = strdup(dir))) {
        d->tmpfile = -1;
        d->next = sio.dirs;
        sio.dirs = d;
        return d;
    }
    snprintf(err, errlen, "spool %s: %s", dir, strerror(d && d->fd < 0 ? errno : ENOMEM));
    if (d && d->fd >= 0)
        close(d->fd);
    free(d);
    return NULL;
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
    j->fd[SPOOL_EML] = j->fd[SPOOL_ENV] = -1;
    j->dir = sio_dir_get(dir, err, errlen);
    j->item = j->dir ? spool_item_new(dir, c, t, err, errlen) : NULL;
    if (!j->item) {
        free(j);
        return NULL;
    }
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&sio.mu);
    list_push(&sio.todo, j);
    sio.unclaimed++;
    int rc = sio_grow();
    if (rc != 0) {              /* no thread at all: take the job back */
        sio.todo.head = NULL;
        sio.todo.tail = &sio.todo.head;
        sio.unclaimed = 0;
    }
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
