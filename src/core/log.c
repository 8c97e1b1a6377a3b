/* log.c — the log sink: timestamped lines on stderr, or syslog(3). */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level_max = LOG_LVL_INFO;
static int log_use_syslog;
static const char *const log_names[] = { "error", "warn", "info", "debug" };

void log_setup(const char *target, int level)
{
    log_level_max = level;
    if (target && strcmp(target, "syslog") == 0 && !log_use_syslog) {
        openlog("kasi", LOG_PID | LOG_NDELAY, LOG_MAIL);
        log_use_syslog = 1;
    }
}

int log_enabled(int level)
{
    return level <= log_level_max;
}

void log_msg(int level, const char *fmt, ...)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    char line[2048];
    va_list ap;

    if (level > log_level_max)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
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
