/* msg_stream.h — the one reader of a message's output: a cursor over the
 * bytes kasi sends on (the header list as edited, then the body from the
 * store, msg_read's view) from an offset, for every consumer: the
 * downstream client (net/smtp_client.c), sock:send_message (lua/lua_net.c),
 * kasi.forward_chunks (lua/lua_fwd.c) and the txn body reads
 * (lua/lua_api.c).
 *
 * Two options, chosen at init:
 *   MSG_STREAM_SMTP   what follows a 354: the bytes dot-stuffed
 *                     (proto/smtp_stuff.h), then the end-of-data line
 *                     (".\r\n" after a CRLF or an empty message, else
 *                     "\r\n.\r\n"), which always comes from a call of its own.
 *   MSG_STREAM_FILES  msg_stream_fill may add body bytes that sit in the
 *                     spill file as file segments (the kernel sends them
 *                     with sendfile) instead of copies; in SMTP mode cut at
 *                     the line-starting dots the store noted, where the
 *                     stuffing '.' goes in. Only for an evbuffer that a
 *                     plain socket drains (TLS needs the bytes in memory).
 *
 * The stream holds no buffer and no reference: m is read at each call, so
 * the message must outlive the calls (not the evbuffer: a segment keeps its
 * own descriptor). A caller may point m again at the same message between
 * calls. Not thread-safe; no callbacks. */
#ifndef KASI_MSG_STREAM_H
#define KASI_MSG_STREAM_H

#include <stddef.h>
#include <sys/types.h>

#include "proto/smtp_stuff.h"

struct msg;
struct evbuffer;

enum {
    MSG_STREAM_SMTP  = 1 << 0,
    MSG_STREAM_FILES = 1 << 1,
};

/* Bytes at most queued by reference in one step; a socket that sends file
 * segments should write as much at once (bufferevent_set_max_single_write). */
#define MSG_STREAM_FILE_AHEAD (4 * 1024 * 1024)
/* Message bytes copied in one step of msg_stream_fill. */
#define MSG_STREAM_CHUNK (64 * 1024)

struct msg_stream {
    struct msg *m;
    size_t off;                 /* output offset of the next message byte */
    unsigned flags;             /* MSG_STREAM_* */
    size_t tail;                /* SMTP: bytes of the end-of-data line given */
    struct smtp_stuffer st;     /* SMTP: the stuffer, as of off */
};

/* Start at output offset off (SMTP: the stuffer as if it had seen the
 * bytes before off; at off 0 m is not read and may still be NULL). 0, or
 * -1 when those bytes cannot be read. */
int msg_stream_init(struct msg_stream *s, struct msg *m, size_t off,
                    unsigned flags);
/* 1 when every byte (and in SMTP mode the end-of-data line) was given. */
int msg_stream_done(const struct msg_stream *s);
/* 1 when msg_stream_fill may add file segments: FILES asked and the
 * message has a spill file. */
int msg_stream_by_reference(const struct msg_stream *s);

/* Copy the next output bytes into buf, as many as fit: up to n message
 * bytes, or in SMTP mode up to n/2 message bytes stuffed (so n >= 2 while
 * message bytes remain), or the end-of-data line (or what fits of it).
 * Returns the bytes written, 0 only when done, -1 on a read error (errno;
 * EINVAL for n < 2 in SMTP mode). */
ssize_t msg_stream_read(struct msg_stream *s, void *buf, size_t n);

/* Append the next output to out while it holds fewer than limit bytes:
 * copies of at most MSG_STREAM_CHUNK message bytes (twice that stuffed)
 * a step, or with FILES file segments of at most MSG_STREAM_FILE_AHEAD
 * bytes, so out may pass limit by one step. Returns 1 when done, 0 when
 * more is to come (call again once out has drained), -1 on an error
 * (errno: ENOMEM, or that of the read). */
int msg_stream_fill(struct msg_stream *s, struct evbuffer *out, size_t limit);

#endif
