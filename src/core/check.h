/* check.h — assertions on states that cannot happen. CHECK(cond) is true
 * when cond holds. When it does not, the sanitizer build (KASI_ABORT_ON_CHECK,
 * set by `make asan`) aborts so the test suite fails loudly; the release
 * build logs the file, line and condition once per call site and lets the
 * caller take its safe way out:
 *
 *     if (!CHECK(!ps->run.active)) { ...recover... }
 */
#ifndef KASI_CHECK_H
#define KASI_CHECK_H

int check_failed(const char *file, int line, const char *cond);

#define CHECK(cond) ((cond) ? 1 : check_failed(__FILE__, __LINE__, #cond))

#endif
