#include "util/parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
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

/* Length of the plain decimal number at the start of s (DIGITS[.DIGITS] or .DIGITS), 0 when there is
   none: strtod alone would also take hex ("0x10"), exponents, "inf" and "nan". */
static size_t decimal_prefix(const char *s) {
  size_t i = 0, digits = 0;
  while (isdigit((unsigned char)s[i])) i++, digits++;
  if (s[i] == '.') {
    i++;
    while (isdigit((unsigned char)s[i])) i++, digits++;
  }
  return digits > 0 ? i : 0;
}

/* The decimal number of the first n characters of s. */
static double decimal_value(const char *s, size_t n) {
  char buf[64];
  if (n >= sizeof(buf)) return INFINITY;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return strtod(buf, NULL);
}

int kbox_parse_size(const char *opt, const char *s, uint64_t *out, kbox_error_t *err) {
  char q[96];
  size_t n = s != NULL ? decimal_prefix(s) : 0;
  if (n == 0)
    return kbox_error_make(err, 0, "%s: '%s' is not a size (examples: 512M, 1G, 64k)", opt, kbox_quote(s ? s : "", q, sizeof(q)));
  double v = decimal_value(s, n);
  uint64_t mult = size_unit(s + n);
  if (mult == 0) {
    char u[64];
    return kbox_error_make(err, 0, "%s: unknown unit '%s' in '%s' (use K, M, G or T)", opt, kbox_quote(s + n, u, sizeof(u)),
                           kbox_quote(s, q, sizeof(q)));
  }
  double bytes = v * (double)mult;
  if (!isfinite(bytes) || bytes >= 18446744073709551615.0)
    return kbox_error_make(err, 0, "%s: '%s' is too large", opt, kbox_quote(s, q, sizeof(q)));
  *out = (uint64_t)bytes;
  return 0;
}

int kbox_parse_size_min(const char *opt, const char *s, uint64_t min, const char *why, uint64_t *out, kbox_error_t *err) {
  if (kbox_parse_size(opt, s, out, err) < 0) return -1;
  if (*out < min) {
    char m[32];
    return kbox_error_make(err, 0, "%s: %s is too small: the minimum is %s (%s)", opt, s, kbox_human_size(min, m, sizeof(m)), why);
  }
  return 0;
}

int kbox_parse_uint(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                    kbox_error_t *err) {
  char q[96];
  if (s == NULL || !isdigit((unsigned char)*s))
    return kbox_error_make(err, 0, "%s: '%s' is not a number", opt, kbox_quote(s ? s : "", q, sizeof(q)));
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return kbox_error_make(err, 0, "%s: '%s' is not a number", opt, kbox_quote(s, q, sizeof(q)));
  if (v < min || v > max)
    return kbox_error_make(err, 0, "%s: %llu is out of range (%llu..%llu)", opt, v,
                           (unsigned long long)min, (unsigned long long)max);
  *out = v;
  return 0;
}

int kbox_parse_double(const char *opt, const char *s, double max, double *out, kbox_error_t *err) {
  char q[96];
  size_t n = s != NULL ? decimal_prefix(s) : 0;
  if (n == 0 || s[n] != '\0')
    return kbox_error_make(err, 0, "%s: '%s' is not a decimal number (examples: 2, 0.5)", opt, kbox_quote(s ? s : "", q, sizeof(q)));
  double v = decimal_value(s, n);
  if (!isfinite(v) || v <= 0 || v > max)
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
  char q[96];
  if (n == 0 || n > 64)
    return kbox_error_make(err, 0, "%s: id must be 1 to 64 characters", opt);
  if (!isalnum((unsigned char)s[0]))
    return kbox_error_make(err, 0, "%s: id '%s' must start with a letter or digit", opt, kbox_quote(s, q, sizeof(q)));
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && strchr("_.-", s[i]) == NULL)
      return kbox_error_make(err, 0, "%s: id '%s' may only contain letters, digits, '_', '.', '-'", opt,
                             kbox_quote(s, q, sizeof(q)));
  return 0;
}

int kbox_validate_hostname(const char *opt, const char *s, kbox_error_t *err) {
  size_t n = s ? strlen(s) : 0;
  char q[96];
  if (n == 0 || n > 64) return kbox_error_make(err, 0, "%s: must be 1 to 64 characters", opt);
  for (const char *label = s; *label != '\0';) {
    size_t len = strcspn(label, ".");
    bool bad = len == 0 || len > 63 || label[0] == '-' || label[len - 1] == '-';
    for (size_t i = 0; i < len && !bad; i++) bad = !isalnum((unsigned char)label[i]) && label[i] != '-';
    if (bad)
      return kbox_error_make(err, 0, "%s: '%s' is not a hostname (dot-separated labels of letters, digits and '-', "
                             "each 1 to 63 characters, not starting or ending with '-')", opt, kbox_quote(s, q, sizeof(q)));
    label += len;
    if (*label == '.' && label[1] == '\0') break; /* one trailing dot is allowed */
    if (*label == '.') label++;
  }
  return 0;
}

int kbox_validate_ip(const char *opt, const char *s, kbox_error_t *err) {
  unsigned char addr[sizeof(struct in6_addr)];
  char q[96];
  if (s != NULL && (inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1)) return 0;
  return kbox_error_make(err, 0, "%s: '%s' is not an IPv4 or IPv6 address (examples: 127.0.0.1, 0.0.0.0, ::1)", opt,
                         kbox_quote(s ? s : "", q, sizeof(q)));
}

const char *kbox_quote(const char *s, char *buf, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (n == 0) return "";
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    char esc[5];
    size_t len = 1;
    esc[0] = (char)*p;
    if (*p == '\n' || *p == '\t' || *p == '\r' || *p == '\\' || *p == '\'') {
      esc[0] = '\\';
      esc[1] = *p == '\n' ? 'n' : *p == '\t' ? 't' : *p == '\r' ? 'r' : (char)*p;
      len = 2;
    } else if (*p < 0x20 || *p >= 0x7f) {
      esc[0] = '\\', esc[1] = 'x', esc[2] = hex[*p >> 4], esc[3] = hex[*p & 15];
      len = 4;
    }
    if (o + len + 4 > n) { /* room for "..." and the NUL */
      snprintf(buf + o, n - o, "...");
      return buf;
    }
    memcpy(buf + o, esc, len);
    o += len;
  }
  buf[o] = '\0';
  return buf;
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

const char *kbox_human_size(uint64_t bytes, char *buf, size_t n) {
  static const char units[] = "KMGT";
  int u = -1;
  uint64_t v = bytes;
  while (v >= 1024 && v % 1024 == 0 && u < 3) v /= 1024, u++;
  if (u < 0) snprintf(buf, n, "%llu bytes", (unsigned long long)bytes);
  else snprintf(buf, n, "%llu%ciB", (unsigned long long)v, units[u]);
  return buf;
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
