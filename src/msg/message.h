/* message.h — a received message: its bytes (msg_store) plus the header
 * section parsed into an editable list. Plugins edit the list; the body is
 * never copied. Output is: the header list (each header's raw bytes kept
 * unless it was edited), then the body straight from the store. */
#ifndef KASI_MESSAGE_H
#define KASI_MESSAGE_H

#include <stddef.h>
#include "msg/msg_store.h"

struct msg_header {
    char *raw;        /* "Name: value\r\n" exactly as it goes out (folding kept) */
    size_t raw_len;
    size_t name_len;  /* raw[0..name_len) is the name */
};

struct msg {
    struct msg_store *store;
    struct msg_header *hdr;   /* in output order */
    size_t nhdr, hdr_cap;
    size_t body_off;          /* store offset where the body starts */
    size_t hdr_bytes;         /* sum of raw_len */
};

/* Takes ownership of store. */
struct msg *msg_new(struct msg_store *store);
void msg_free(struct msg *m);

/* Parse the header section out of the store (call once, at end of data). */
int msg_parse_headers(struct msg *m);

/* Header edits. Names are case-insensitive; value is the text after
 * "Name:" (a leading space is added; embedded "\n" become folds). */
int msg_header_add(struct msg *m, const char *name, const char *value);
int msg_header_prepend(struct msg *m, const char *name, const char *value);
/* Raw prepend: line must be "Name: ...\r\n" possibly folded. */
int msg_header_prepend_raw(struct msg *m, const char *raw, size_t len);
size_t msg_header_remove(struct msg *m, const char *name);
/* i-th header (0-based) named name; returns unfolded, trimmed value (caller
 * frees) or NULL. */
char *msg_header_get(const struct msg *m, const char *name, size_t i);
size_t msg_header_count(const struct msg *m, const char *name);

/* Total output size, and output to a file descriptor. */
size_t msg_size(const struct msg *m);
int msg_write_fd(struct msg *m, int fd);
/* Read output bytes at off (headers then body). Same contract as
 * msg_store_read. */
ssize_t msg_read(struct msg *m, size_t off, void *buf, size_t n);

#endif
