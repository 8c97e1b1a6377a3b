/* log.h — one-line log records to stderr (foreground) or syslog.
 * Session code logs through slog() in session.h, which adds the
 * connection id; everything else uses log_msg(). */
#ifndef KASI_LOG_H
#define KASI_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* target: "stderr" or "syslog"; level: the most verbose level written. */
void log_setup(const char *target, int level);
int log_enabled(int level);
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copy n bytes of in into out (outlen > 4) as a "quoted" log field: '"'
 * becomes '\'' and a cut text ends in "..." (control bytes and malformed
 * UTF-8 are escaped by log_msg, as everywhere). Returns out. */
char *log_quote(char *out, size_t outlen, const char *in, size_t n);

#endif
