/* A strict, allocation-free JSON check for the broker's hot path: validates that a buffer is
   exactly one JSON object (RFC 8259 syntax, UTF-8 strings, bounded nesting) and reports where
   the string values of some top-level members are. Replaces a full parse (jansson allocates
   every node) where the broker only needs "is this well-formed, and what is msg_type". */
#ifndef KBOX_KERNEL_JSCAN_H
#define KBOX_KERNEL_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

#define KBOX_JSCAN_MAX_DEPTH 64

/* The raw text of a string value, between its quotes (escapes are left as written). */
struct kbox_jspan {
  const char *p;  /* NULL: member absent or not a string */
  size_t n;
  bool escaped;   /* contains a backslash escape: p/n is not the decoded value */
};

/* True when buf[0..n) is one JSON object (surrounding whitespace allowed). For each keys[i]
   (compared with the member names as written, no escapes), out[i] receives the span of the
   member's string value; the last duplicate wins, as in most parsers. */
bool kbox_jscan_object(const char *buf, size_t n, const char *const *keys, size_t nkeys, struct kbox_jspan *out);

/* Does the span hold exactly s (and no escapes)? */
bool kbox_jspan_eq(const struct kbox_jspan *sp, const char *s);

#endif
