/* spool.c — durable local queue files (see spool.h for the format). */
#include "msg/spool.h"
#include "core/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* Write tmp, fsync, rename to final. body: 0 = envelope, 1 = message. */
static int write_file(const char *dir, const char *id, const char *ext,
                      const struct conn *s, struct txn *t)
{
    char tmp[4096], final[4096];
    snprintf(tmp, sizeof tmp, "%s/.%s.%s.tmp", dir, id, ext);
    snprintf(final, sizeof final, "%s/%s.%s", dir, id, ext);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc;
    if (strcmp(ext, "eml") == 0) {
        rc = msg_write_fd(t->msg, fd);
    } else {
        FILE *f = fdopen(dup(fd), "w");
        rc = f ? write_envelope(f, s, t) : -1;
        if (f && fclose(f) != 0)
            rc = -1;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -1;
    int saved = errno;
    close(fd);
    if (rc == 0 && rename(tmp, final) == 0)
        return 0;
    if (rc == 0)
        saved = errno;
    unlink(tmp);
    errno = saved;
    return -1;
}

int spool_write(const char *dir, const struct conn *s, struct txn *t,
                char *err, size_t errlen)
{
    if (write_file(dir, t->id, "eml", s, t) < 0 ||
        write_file(dir, t->id, "env", s, t) < 0) {
        snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
        char p[4096];
        snprintf(p, sizeof p, "%s/%s.eml", dir, t->id);
        unlink(p);
        return -1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dfd >= 0 ? fsync(dfd) : -1;
    if (dfd >= 0)
        close(dfd);
    if (rc < 0) {
        snprintf(err, errlen, "fsync %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}
