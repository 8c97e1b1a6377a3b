/* check.c — see check.h. */
#include "core/check.h"

#include <stdlib.h>

#include "core/log.h"

int check_failed(const char *file, int line, const char *cond)
{
    log_msg(LOG_LVL_ERROR, "internal error: %s:%d: check failed: %s", file, line, cond);
#ifdef KASI_ABORT_ON_CHECK
    abort();
#endif
    return 0;
}
