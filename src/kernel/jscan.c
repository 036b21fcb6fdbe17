#include "kernel/jscan.h"

#include <string.h>

struct scan {
  const unsigned char *p, *end;
  int depth;
};

static void skip_ws(struct scan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static bool is_hex(unsigned char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* One UTF-8 sequence starting at s->p (a byte >= 0x80): well-formed, shortest form, no surrogates. */
static bool utf8_seq(struct scan *s) {
  unsigned char c = *s->p;
  size_t len;
  unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return false;
  }
  if ((size_t)(s->end - s->p) < len || s->p[1] < lo || s->p[1] > hi) return false;
  for (size_t i = 2; i < len; i++)
    if ((s->p[i] & 0xc0) != 0x80) return false;
  s->p += len;
  return true;
}

static int hexval(unsigned char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* The code unit of a \uXXXX escape at s->p (moved past it), or -1 when malformed. */
static long hex4(struct scan *s) {
  if (s->end - s->p < 6 || !is_hex(s->p[2]) || !is_hex(s->p[3]) || !is_hex(s->p[4]) || !is_hex(s->p[5])) return -1;
  long u = (hexval(s->p[2]) << 12) | (hexval(s->p[3]) << 8) | (hexval(s->p[4]) << 4) | hexval(s->p[5]);
  s->p += 6;
  return u;
}

/* A string at s->p (the opening quote); span gets its raw contents. */
static bool string(struct scan *s, struct kbox_jspan *span) {
  const unsigned char *start = ++s->p;
  bool escaped = false;
  while (s->p < s->end) {
    unsigned char c = *s->p;
    if (c == '"') {
      if (span != NULL) *span = (struct kbox_jspan){(const char *)start, (size_t)(s->p - start), escaped};
      s->p++;
      return true;
    }
    if (c < 0x20) return false;
    if (c == '\\') {
      escaped = true;
      if (s->end - s->p < 2) return false;
      c = s->p[1];
      if (c == 'u') {
        long u = hex4(s);
        if (u < 0) return false;
        /* UTF-16 surrogates only as a high-low pair: a lone one is no character (jansson refuses
           it; a Python peer would decode it and then fail to encode its reply) */
        if (u >= 0xdc00 && u <= 0xdfff) return false;
        if (u >= 0xd800 && u <= 0xdbff) {
          if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u') return false;
          long lo = hex4(s);
          if (lo < 0xdc00 || lo > 0xdfff) return false;
        }
      } else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
        s->p += 2;
      } else {
        return false;
      }
    } else if (c >= 0x80) {
      if (!utf8_seq(s)) return false;
    } else {
      s->p++;
    }
  }
  return false;
}

static size_t digits(struct scan *s) {
  const unsigned char *b = s->p;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
  return (size_t)(s->p - b);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool number(struct scan *s) {
  if (s->p < s->end && *s->p == '-') s->p++;
  if (s->p >= s->end) return false;
  if (*s->p == '0') s->p++;
  else if (digits(s) == 0) return false;
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    if (digits(s) == 0) return false;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
    if (digits(s) == 0) return false;
  }
  return true;
}

static bool literal(struct scan *s, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return false;
  s->p += n;
  return true;
}

static bool value(struct scan *s, struct kbox_jspan *as_string);

/* An object or array at s->p; for the top-level object, record the wanted members. */
static bool container(struct scan *s, const char *const *keys, size_t nkeys, struct kbox_jspan *out) {
  bool obj = *s->p == '{';
  unsigned char close = obj ? '}' : ']';
  if (++s->depth > KBOX_JSCAN_MAX_DEPTH) return false;
  s->p++;
  skip_ws(s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    s->depth--;
    return true;
  }
  for (;;) {
    struct kbox_jspan name = {0}, val = {0};
    if (obj) {
      if (s->p >= s->end || *s->p != '"' || !string(s, &name)) return false;
      skip_ws(s);
      if (s->p >= s->end || *s->p != ':') return false;
      s->p++;
      skip_ws(s);
    }
    if (!value(s, &val)) return false;
    for (size_t i = 0; obj && i < nkeys; i++)
      if (!name.escaped && name.n == strlen(keys[i]) && memcmp(name.p, keys[i], name.n) == 0) out[i] = val;
    skip_ws(s);
    if (s->p >= s->end) return false;
    if (*s->p == close) break;
    if (*s->p != ',') return false;
    s->p++;
    skip_ws(s);
  }
  s->p++;
  s->depth--;
  return true;
}

/* Any value; as_string gets the span when it is a string (else stays {0}). */
static bool value(struct scan *s, struct kbox_jspan *as_string) {
  if (s->p >= s->end) return false;
  switch (*s->p) {
  case '{':
  case '[':
    return container(s, NULL, 0, NULL);
  case '"':
    return string(s, as_string);
  case 't':
    return literal(s, "true");
  case 'f':
    return literal(s, "false");
  case 'n':
    return literal(s, "null");
  default:
    return number(s);
  }
}

bool kbox_jscan_object(const char *buf, size_t n, const char *const *keys, size_t nkeys, struct kbox_jspan *out) {
  struct scan s = {(const unsigned char *)buf, (const unsigned char *)buf + n, 0};
  for (size_t i = 0; i < nkeys; i++) out[i] = (struct kbox_jspan){0};
  skip_ws(&s);
  if (s.p >= s.end || *s.p != '{' || !container(&s, keys, nkeys, out)) return false;
  skip_ws(&s);
  return s.p == s.end;
}

bool kbox_jspan_eq(const struct kbox_jspan *sp, const char *s) {
  return sp->p != NULL && !sp->escaped && sp->n == strlen(s) && memcmp(sp->p, s, sp->n) == 0;
}
