/* thread.h — the one way kasi starts a thread (spool I/O, crypt jobs).
 *
 * Signals belong to the event loop's thread: every other thread starts
 * with all of them blocked, so a process-directed signal (SIGTERM from the
 * supervisor) is never taken by a thread that cannot act on it. */
#ifndef KASI_THREAD_H
#define KASI_THREAD_H

#include <pthread.h>

/* pthread_create with every signal blocked in the new thread. Returns 0
 * or pthread_create's error. */
int thread_start(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

#endif
