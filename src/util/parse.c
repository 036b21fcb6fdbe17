#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

/* Multiplier for a size suffix ("", "k", "KiB", "MB", ...); 0 when unknown. */
static uint64_t size_unit(const char *suffix) {
  static const struct { const char *names[4]; uint64_t mult; } units[] = {
      {{"", "b", NULL, NULL}, 1ULL},
      {{"k", "kb", "kib", NULL}, 1ULL << 10},
      {{"m", "mb", "mib", NULL}, 1ULL << 20},
      {{"g", "gb", "gib", NULL}, 1ULL << 30},
      {{"t", "tb", "tib", NULL}, 1ULL << 40},
  };
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    for (size_t j = 0; j < 4 && units[i].names[j] != NULL; j++)
      if (strcasecmp(suffix, units[i].names[j]) == 0) return units[i].mult;
  return 0;
}

int kbox_parse_size(const char *opt, const char *s, uint64_t *out, kbox_error_t *err) {
  if (s == NULL || *s == '\0' || !isdigit((unsigned char)*s))
    return kbox_error_make(err, 0, "%s: '%s' is not a size (examples: 512M, 1G, 64k)", opt, s ? s : "");
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || !isfinite(v) || v < 0)
    return kbox_error_make(err, 0, "%s: '%s' is not a size (examples: 512M, 1G, 64k)", opt, s);
  uint64_t mult = size_unit(end);
  if (mult == 0)
    return kbox_error_make(err, 0, "%s: unknown unit '%s' in '%s' (use K, M, G or T)", opt, end, s);
  double bytes = v * (double)mult;
  if (bytes >= 18446744073709551615.0)
    return kbox_error_make(err, 0, "%s: '%s' is too large", opt, s);
  *out = (uint64_t)bytes;
  return 0;
}

int kbox_parse_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                    kbox_error_t *err) {
  if (s == NULL || !isdigit((unsigned char)*s))
    return kbox_error_make(err, 0, "%s: '%s' is not a number", opt, s ? s : "");
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return kbox_error_make(err, 0, "%s: '%s' is not a number", opt, s);
  if (v < min || v > max)
    return kbox_error_make(err, 0, "%s: %llu is out of range (%llu..%llu)", opt, v,
                           (unsigned long long)min, (unsigned long long)max);
  *out = v;
  return 0;
}

int kbox_parse_double(const char *opt, const char *s, double max, double *out, kbox_error_t *err) {
  if (s == NULL || *s == '\0' || !(isdigit((unsigned char)*s) || *s == '.'))
    return kbox_error_make(err, 0, "%s: '%s' is not a number", opt, s ? s : "");
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || !isfinite(v))
    return kbox_error_make(err, 0, "%s: '%s' is not a number", opt, s);
  if (v <= 0 || v > max)
    return kbox_error_make(err, 0, "%s: %s is out of range (more than 0, at most %g)", opt, s, max);
  *out = v;
  return 0;
}

int kbox_parse_seconds(const char *opt, const char *s, uint64_t *out_ms, kbox_error_t *err) {
  double v = 0;
  if (kbox_parse_double(opt, s, 365.0 * 86400, &v, err) < 0) return -1;
  *out_ms = (uint64_t)llround(v * 1000.0);
  if (*out_ms == 0) *out_ms = 1;
  return 0;
}

int kbox_parse_user(const char *opt, const char *s, uid_t *uid, gid_t *gid, kbox_error_t *err) {
  char buf[64];
  if (s == NULL || strlen(s) >= sizeof(buf))
    return kbox_error_make(err, 0, "%s: '%s' is not UID[:GID]", opt, s ? s : "");
  strcpy(buf, s);
  char *colon = strchr(buf, ':');
  if (colon != NULL) *colon = '\0';
  uint64_t u = 0, g = *gid;
  if (kbox_parse_uint(opt, buf, 0, 65535, &u, err) < 0) return -1;
  if (colon != NULL && kbox_parse_uint(opt, colon + 1, 0, 65535, &g, err) < 0) return -1;
  *uid = (uid_t)u;
  *gid = (gid_t)g;
  return 0;
}

int kbox_validate_id(const char *opt, const char *s, kbox_error_t *err) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 64)
    return kbox_error_make(err, 0, "%s: id must be 1 to 64 characters", opt);
  if (!isalnum((unsigned char)s[0]))
    return kbox_error_make(err, 0, "%s: id '%s' must start with a letter or digit", opt, s);
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && strchr("_.-", s[i]) == NULL)
      return kbox_error_make(err, 0, "%s: id '%s' may only contain letters, digits, '_', '.', '-'",
                             opt, s);
  return 0;
}

int kbox_parse_port_range(const char *opt, const char *s, unsigned *lo, unsigned *hi,
                          kbox_error_t *err) {
  const char *dots = s ? strstr(s, "..") : NULL;
  if (dots == NULL || dots == s || dots - s > 10)
    return kbox_error_make(err, 0, "%s: '%s' is not a port range LO..HI", opt, s ? s : "");
  char lo_s[16];
  memcpy(lo_s, s, (size_t)(dots - s));
  lo_s[dots - s] = '\0';
  uint64_t l = 0, h = 0;
  if (kbox_parse_uint(opt, lo_s, 0, 65535, &l, err) < 0) return -1;
  if (kbox_parse_uint(opt, dots + 2, 0, 65535, &h, err) < 0) return -1;
  if (l > h) return kbox_error_make(err, 0, "%s: range %s is empty (LO > HI)", opt, s);
  *lo = (unsigned)l;
  *hi = (unsigned)h;
  return 0;
}

int kbox_random_hex(char *buf, size_t bytes, kbox_error_t *err) {
  unsigned char raw[64];
  if (bytes > sizeof(raw)) bytes = sizeof(raw);
  if (getrandom(raw, bytes, 0) != (ssize_t)bytes)
    return kbox_error_make(err, errno, "reading random bytes");
  for (size_t i = 0; i < bytes; i++) sprintf(buf + 2 * i, "%02x", raw[i]);
  buf[2 * bytes] = '\0';
  return 0;
}
