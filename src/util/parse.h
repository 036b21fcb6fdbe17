/* Parsers for command-line values: sizes, numbers, durations, ids, user specs. */
#ifndef KBOX_PARSE_H
#define KBOX_PARSE_H

#include <stdint.h>
#include <sys/types.h>
#include "util/error.h"

/* "512M", "1G", "1.5GiB", "4096", "64k": binary units (K=1024). */
int kbox_parse_size(const char *opt, const char *s, uint64_t *out, kbox_error_t *err);
/* Unsigned decimal integer within [min, max]. */
int kbox_parse_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                    kbox_error_t *err);
/* Positive decimal seconds ("1", "0.5", "2.25"), stored as milliseconds. */
int kbox_parse_seconds(const char *opt, const char *s, uint64_t *out_ms, kbox_error_t *err);
/* Positive decimal number (e.g. --cpus 0.5), within (0, max]. */
int kbox_parse_double(const char *opt, const char *s, double max, double *out, kbox_error_t *err);
/* "UID" or "UID:GID" (numeric). GID defaults to *gid as passed in. */
int kbox_parse_user(const char *opt, const char *s, uid_t *uid, gid_t *gid, kbox_error_t *err);
/* Sandbox/kernel ids: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. */
int kbox_validate_id(const char *opt, const char *s, kbox_error_t *err);
/* "LO..HI" port range. */
int kbox_parse_port_range(const char *opt, const char *s, unsigned *lo, unsigned *hi, kbox_error_t *err);
/* Fill buf (>= 2*bytes+1) with random lowercase hex. */
int kbox_random_hex(char *buf, size_t bytes, kbox_error_t *err);

#endif
