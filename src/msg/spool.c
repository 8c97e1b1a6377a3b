/* spool.c — durable local queue files (see spool.h for the format). */
#include "msg/spool.h"
#include "core/utf8.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/log.h"
#include "msg/message.h"
#include "msg/envelope.h"

int spool_prepare(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* JSON string escaping into a FILE. The envelope is always valid UTF-8:
 * a byte of a malformed sequence (an AUTH user name is any bytes the
 * client chose) is written as U+FFFD. */
static void json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t left = strlen((const char *)p);
    fputc('"', f);
    while (left) {
        size_t n = utf8_seq(p, left);
        if (n == 0) {
            fputs("\\ufffd", f);
            n = 1;
        } else if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
        left -= n;
    }
    fputc('"', f);
}

static void json_addr(FILE *f, const struct smtp_addr *a)
{
    char *s = smtp_addr_format(a);
    json_str(f, s);
    free(s);
}

static int write_envelope(FILE *f, const struct conn *s, const struct txn *t)
{
    fprintf(f, "{\"id\":");
    json_str(f, t->id);
    fprintf(f, ",\"mail_from\":");
    json_addr(f, &t->mail.addr);
    fprintf(f, ",\"rcpt_to\":[");
    for (size_t i = 0; i < t->nrcpt; i++) {
        if (i)
            fputc(',', f);
        json_addr(f, &t->rcpt[i].addr);
    }
    fprintf(f, "],\"remote_ip\":");
    json_str(f, s->remote_ip);
    fprintf(f, ",\"remote_port\":%d,\"helo\":", s->remote_port);
    json_str(f, s->helo);
    fprintf(f, ",\"auth_user\":");
    if (s->auth_user)
        json_str(f, s->auth_user);
    else
        fputs("null", f);
    fprintf(f, ",\"smtputf8\":%s,\"body\":\"%s\",\"size\":%zu,\"received_at\":%lld}\n",
            t->mail.smtputf8 ? "true" : "false",
            t->mail.body == SMTP_BODY_8BITMIME ? "8BITMIME" : "7BIT",
            msg_size(t->msg), (long long)time(NULL));
    return ferror(f) ? -1 : 0;
}

/* ------------------------------------------------------------- items */

struct spool_item *spool_item_new(const char *dir, const struct conn *s, struct txn *t,
                                  char *err, size_t errlen)
{
    struct spool_item *it = calloc(1, sizeof *it);
    const struct msg *m = t->msg;
    if (!it || !(it->dir = strdup(dir)) || !(it->head = malloc(m->hdr_bytes + 1)))
        goto oom;
    it->body.fd = -1;
    snprintf(it->id, sizeof it->id, "%s", t->id);
    for (size_t i = 0; i < m->nhdr; i++) {
        memcpy(it->head + it->head_len, m->hdr[i].raw, m->hdr[i].raw_len);
        it->head_len += m->hdr[i].raw_len;
    }
    FILE *f = open_memstream(&it->env, &it->env_len);
    if (!f)
        goto oom;
    int rc = write_envelope(f, s, t);
    if (fclose(f) != 0 || rc < 0)
        goto oom;
    if (msg_store_snapshot(m->store, m->body_off, &it->body) < 0) {
        snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
        spool_item_free(it);
        return NULL;
    }
    return it;
oom:
    snprintf(err, errlen, "spool %s: out of memory", dir);
    spool_item_free(it);
    return NULL;
}

void spool_item_free(struct spool_item *it)
{
    if (!it)
        return;
    msg_snap_free(&it->body);
    free(it->dir);
    free(it->head);
    free(it->env);
    free(it);
}

/* <dir>/.<id>.<ext>.tmp (tmp 1) or <dir>/<id>.<ext> (tmp 0). */
static void item_path(char *p, size_t len, const struct spool_item *it, int file, int tmp)
{
    const char *ext = file == SPOOL_EML ? "eml" : "env";
    snprintf(p, len, tmp ? "%s/.%s.%s.tmp" : "%s/%s.%s", it->dir, it->id, ext);
}

/* A new file for one of its files: unnamed (O_TMPFILE, tmpfile 1) or
 * under its temporary name. The descriptor, or -1 (errno). */
static int item_create(const struct spool_item *it, int file, int tmpfile)
{
    if (tmpfile)
        return open(it->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    char tmp[4096];
    item_path(tmp, sizeof tmp, it, file, 1);
    return open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

int spool_item_write(const struct spool_item *it, int file, int tmpfile)
{
    int fd = item_create(it, file, tmpfile);
    if (fd < 0)
        return -1;
    int rc = file == SPOOL_EML
        ? (fdio_write_all(fd, it->head, it->head_len) == 0 ? msg_snap_write_fd(&it->body, fd) : -1)
        : fdio_write_all(fd, it->env, it->env_len);
    if (rc == 0)
        return fd;
    int saved = errno;
    close(fd);
    if (!tmpfile) {
        char tmp[4096];
        item_path(tmp, sizeof tmp, it, file, 1);
        unlink(tmp);
    }
    errno = saved;
    return -1;
}

/* Give the unnamed file open on fd the name path. 0 or -1 (errno). */
static int link_unnamed(int fd, const char *path)
{
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

int spool_item_publish(const struct spool_item *it, int file, int fd, int tmpfile)
{
    char tmp[4096], final[4096];
    item_path(final, sizeof final, it, file, 0);
    if (tmpfile)
        return link_unnamed(fd, final);
    item_path(tmp, sizeof tmp, it, file, 1);
    return rename(tmp, final);
}

int spool_tmpfile_works(const char *dir)
{
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.probe.%ld.%ld.tmp", dir, (long)getpid(), (long)gettid());
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    int ok = link_unnamed(fd, probe) == 0;
    close(fd);
    if (ok)
        unlink(probe);
    return ok;
}

void spool_item_discard(const struct spool_item *it)
{
    char p[4096];
    for (int file = SPOOL_ENV; file >= SPOOL_EML; file--) {   /* .env first */
        item_path(p, sizeof p, it, file, 0);
        unlink(p);
        item_path(p, sizeof p, it, file, 1);
        unlink(p);
    }
}

/* Is name one of the temporary files spool writes make? */
static int is_spool_tmp(const char *name)
{
    size_t n = strlen(name);
    if (name[0] != '.' || n < 9 || strcmp(name + n - 4, ".tmp") != 0)
        return 0;
    return !strncmp(name + n - 8, ".eml", 4) || !strncmp(name + n - 8, ".env", 4) ||
           !strncmp(name, ".probe.", 7);
}

/* Older than this, a temporary file is no write still running. */
#define SWEEP_AGE 3600

static int sweep(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    time_t now = time(NULL);
    int removed = 0;
    struct dirent *e;
    struct stat st;
    while ((e = readdir(d)))
        if (is_spool_tmp(e->d_name) && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && now - st.st_mtime > SWEEP_AGE &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    closedir(d);
    return removed;
}

void spool_sweep(const char *dir)
{
    int n = sweep(dir);
    if (n > 0)
        log_msg(LOG_LVL_INFO, "spool_dir %s: removed %d temporary file%s of writes a crash "
                "cut short", dir, n, n == 1 ? "" : "s");
    else if (n < 0)
        log_msg(LOG_LVL_WARN, "spool_dir %s: %s", dir, strerror(errno));
}
