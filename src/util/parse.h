/* Parsers for command-line values: sizes, numbers, durations, ids, user specs. */
#ifndef KBOX_PARSE_H
#define KBOX_PARSE_H

#include <stdint.h>
#include <sys/types.h>
#include "util/error.h"

/* "512M", "1G", "1.5GiB", "4096", "64k": a plain decimal number and a binary unit (K=1024). */
int kbox_parse_size(const char *opt, const char *s, uint64_t *out, kbox_error_t *err);
/* Same, at least min bytes; why says what a smaller value would break (named in the error). */
int kbox_parse_size_min(const char *opt, const char *s, uint64_t min, const char *why, uint64_t *out, kbox_error_t *err);
/* Unsigned decimal integer within [min, max]. */
int kbox_parse_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                    kbox_error_t *err);
/* Positive decimal seconds ("1", "0.5", "2.25"), stored as milliseconds. */
int kbox_parse_seconds(const char *opt, const char *s, uint64_t *out_ms, kbox_error_t *err);
/* Positive plain decimal number (e.g. --cpus 0.5; no hex, exponent, inf or nan), within (0, max]. */
int kbox_parse_double(const char *opt, const char *s, double max, double *out, kbox_error_t *err);
/* "UID" or "UID:GID" (numeric). GID defaults to *gid as passed in. */
int kbox_parse_user(const char *opt, const char *s, uid_t *uid, gid_t *gid, kbox_error_t *err);
/* Sandbox/kernel ids: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. */
int kbox_validate_id(const char *opt, const char *s, kbox_error_t *err);
/* A hostname: dot-separated labels of [A-Za-z0-9-] (1-63 characters, no leading/trailing '-'), at most 64. */
int kbox_validate_hostname(const char *opt, const char *s, kbox_error_t *err);
/* An IPv4 or IPv6 address literal. */
int kbox_validate_ip(const char *opt, const char *s, kbox_error_t *err);
/* s made safe to show in a message: control and non-ASCII bytes as \xNN (\n, \t, \r, \\, \'),
   cut with "..." to fit buf. Returns buf. */
const char *kbox_quote(const char *s, char *buf, size_t n);
/* "LO..HI" port range. */
int kbox_parse_port_range(const char *opt, const char *s, unsigned *lo, unsigned *hi, kbox_error_t *err);
/* "64MiB", "1GiB", "1000 bytes": a size as a person reads it. Returns buf. */
const char *kbox_human_size(uint64_t bytes, char *buf, size_t n);
/* Fill buf (>= 2*bytes+1) with random lowercase hex. */
int kbox_random_hex(char *buf, size_t bytes, kbox_error_t *err);

#endif
