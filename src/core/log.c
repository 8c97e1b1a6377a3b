/* log.c — the log sink: timestamped lines on stderr, or syslog(3) when a
 * syslog socket exists (else stderr, with a warning). */
#include "core/log.h"
#include "core/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level_max = LOG_LVL_INFO;
static int log_use_syslog;
static const char *const log_names[] = { "error", "warn", "info", "debug" };

#define LOG_SYSLOG_SOCKET "/dev/log"

/* Is there a syslog daemon to talk to? syslog(3) drops lines silently
 * when its socket is missing (a container, a minimal system). */
static int syslog_available(void)
{
    struct stat st;
    return stat(LOG_SYSLOG_SOCKET, &st) == 0 && S_ISSOCK(st.st_mode);
}

void log_setup(const char *target, int level)
{
    log_level_max = level;
    if (!target || strcmp(target, "syslog") != 0 || log_use_syslog)
        return;
    if (!syslog_available()) {
        log_msg(LOG_LVL_WARN, "log.target: syslog: no syslog socket at %s, "
                "logging to stderr", LOG_SYSLOG_SOCKET);
        return;
    }
    openlog("kasi", LOG_PID | LOG_NDELAY, LOG_MAIL);
    log_use_syslog = 1;
}

int log_enabled(int level)
{
    return level <= log_level_max;
}

/* Client and plugin text reaches log lines: a control byte (a line end
 * would forge a record) or a byte of malformed UTF-8 is written as \xHH. */
static void log_clean(const char *in, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t left = strlen(in), o = 0;
    while (left && o + 5 < outlen) {
        size_t n = utf8_seq(p, left);
        if (n == 1 && (*p < 0x20 || *p == 0x7f))
            n = 0;
        if (n && o + n < outlen) {
            memcpy(out + o, p, n);
            o += n;
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02X", *p);
            n = 1;
        }
        p += n;
        left -= n;
    }
    out[o] = '\0';
}

void log_msg(int level, const char *fmt, ...)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    char raw[2048], line[2048];
    va_list ap;

    if (level > log_level_max)
        return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    log_clean(raw, line, sizeof line);
    if (log_use_syslog) {
        syslog(prio[level], "%s", line);
        return;
    }
    struct timeval tv;
    struct tm tm;
    char ts[32];
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03d kasi[%d] %s: %s\n", ts, (int)(tv.tv_usec / 1000),
            (int)getpid(), log_names[level], line);
}

char *log_quote(char *out, size_t outlen, const char *in, size_t n)
{
    size_t max = outlen - 1, i = 0;
    if (n > max)
        max -= 3;                       /* room for "..." */
    for (; i < n && i < max; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = c == '"' ? '\'' : (char)c;    /* log_msg escapes the rest */
    }
    if (i < n)
        memcpy(out + i, "...", 4);
    else
        out[i] = '\0';
    return out;
}
