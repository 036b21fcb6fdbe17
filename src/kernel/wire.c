#include "kernel/wire.h"

#include "kernel/hmac256.h"
#include "kernel/jscan.h"
#include "util/alloc.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

void kbox_frames_init(struct kbox_frames *f) { memset(f, 0, sizeof(*f)); }

void kbox_frames_clear(struct kbox_frames *f) {
  for (size_t i = 0; i < f->n; i++) zmq_msg_close(&f->v[i]);
  f->n = 0;
  f->bytes = 0;
}

void kbox_frames_free(struct kbox_frames *f) {
  kbox_frames_clear(f);
  free(f->v);
  memset(f, 0, sizeof(*f));
}

/* A new, initialised (empty) frame at the end. */
static zmq_msg_t *frames_push(struct kbox_frames *f) {
  if (f->n == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 16;
    f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
  }
  zmq_msg_init(&f->v[f->n]);
  return &f->v[f->n++];
}

void kbox_frames_add(struct kbox_frames *f, const void *data, size_t len) {
  zmq_msg_t *m = frames_push(f);
  zmq_msg_close(m);
  if (zmq_msg_init_size(m, len) != 0) kbox_oom(); /* its only failure: ENOMEM */
  if (len > 0) memcpy(zmq_msg_data(m), data, len);
  f->bytes += len;
}

void kbox_frames_set(struct kbox_frames *f, size_t i, const void *data, size_t len) {
  f->bytes -= zmq_msg_size(&f->v[i]);
  zmq_msg_close(&f->v[i]);
  if (zmq_msg_init_size(&f->v[i], len) != 0) kbox_oom();
  if (len > 0) memcpy(zmq_msg_data(&f->v[i]), data, len);
  f->bytes += len;
}

/* Read and discard the remaining parts of a message. */
static void drain_more(void *sock) {
  zmq_msg_t m;
  zmq_msg_init(&m);
  int more = 1;
  size_t sz = sizeof(more);
  while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
    if (zmq_msg_recv(&m, sock, 0) < 0) break;
  }
  zmq_msg_close(&m);
}

int kbox_frames_recv(void *sock, struct kbox_frames *f, size_t max_bytes, size_t max_frames, bool *too_big) {
  kbox_frames_clear(f);
  *too_big = false;
  for (;;) {
    zmq_msg_t *m = frames_push(f);
    int flags = f->n == 1 ? ZMQ_DONTWAIT : 0;
    if (zmq_msg_recv(m, sock, flags) < 0) {
      int e = errno;
      zmq_msg_close(m);
      f->n--;
      kbox_frames_clear(f);
      if (e == EAGAIN) return 0;
      errno = e;
      return -1;
    }
    f->bytes += zmq_msg_size(m);
    bool more = zmq_msg_more(m);
    if (f->bytes > max_bytes || f->n > max_frames) {
      *too_big = true;
      if (more) drain_more(sock);
      return 1;
    }
    if (!more) return 1;
  }
}

int kbox_frames_send(void *sock, struct kbox_frames *f) {
  int rc = 0, e = 0;
  size_t i = 0;
  for (; i < f->n; i++) {
    if (zmq_msg_send(&f->v[i], sock, ZMQ_DONTWAIT | (i + 1 < f->n ? ZMQ_SNDMORE : 0)) < 0) {
      rc = -1;
      e = errno;
      break;
    }
  }
  /* A multipart message is atomic: when the first part fails nothing was queued. Parts that
     were not sent are still ours to close (sent ones are already empty). */
  kbox_frames_clear(f);
  errno = e;
  return rc;
}

int kbox_frames_send_or_keep(void *sock, struct kbox_frames *f) {
  if (f->n == 0) return 0;
  if (zmq_msg_send(&f->v[0], sock, ZMQ_DONTWAIT | (f->n > 1 ? ZMQ_SNDMORE : 0)) < 0) {
    if (errno == EAGAIN) return -1; /* nothing queued: the frames are still whole */
    int e = errno;
    kbox_frames_clear(f);
    errno = e;
    return -1;
  }
  int rc = 0, e = 0;
  for (size_t i = 1; i < f->n; i++) {
    /* Once the first part is queued, libzmq accepts the rest of the message. */
    if (zmq_msg_send(&f->v[i], sock, ZMQ_DONTWAIT | (i + 1 < f->n ? ZMQ_SNDMORE : 0)) < 0) {
      rc = -1;
      e = errno;
      break;
    }
  }
  kbox_frames_clear(f);
  errno = e;
  return rc;
}

void kbox_frames_move(struct kbox_frames *dst, struct kbox_frames *src) {
  kbox_frames_clear(dst);
  struct kbox_frames t = *dst;
  *dst = *src;
  *src = t; /* src gets dst's (empty) vector back for reuse */
}

int kbox_auth_init(struct kbox_auth *a, const char *scheme, const char *key, kbox_error_t *err) {
  memset(a, 0, sizeof(*a));
  if (key == NULL || key[0] == '\0') return 0;
  static const struct { const char *scheme, *digest; size_t hexlen; } schemes[] = {
      {"hmac-sha256", "SHA256", 64}, {"hmac-sha1", "SHA1", 40}, {"hmac-sha512", "SHA512", 128}, {"hmac-md5", "MD5", 32}};
  const char *digest = NULL;
  for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
    if (strcmp(scheme, schemes[i].scheme) == 0) {
      digest = schemes[i].digest;
      a->hexlen = schemes[i].hexlen;
    }
  if (digest == NULL)
    return kbox_error_make(err, 0, "signature scheme \"%s\" is not supported (use hmac-sha256)", scheme);
  if (strcmp(digest, "SHA256") == 0) {
    a->sha256 = kbox_hmac256_new(key, strlen(key));
    return 0;
  }
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (mac == NULL) return kbox_error_make(err, 0, "libcrypto has no HMAC");
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
                         OSSL_PARAM_construct_end()};
  if (ctx == NULL || EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params) != 1) {
    EVP_MAC_CTX_free(ctx);
    return kbox_error_make(err, 0, "cannot set up %s signing", scheme);
  }
  a->mac_ctx = ctx;
  return 0;
}

void kbox_auth_free(struct kbox_auth *a) {
  EVP_MAC_CTX_free(a->mac_ctx);
  kbox_hmac256_free(a->sha256);
  memset(a, 0, sizeof(*a));
}

void kbox_auth_sign(struct kbox_auth *a, const void *const part[4], const size_t len[4], char *hex) {
  hex[0] = '\0';
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t outl = 0;
  if (a->sha256 != NULL) {
    kbox_hmac256(a->sha256, part, len, 4, out);
    outl = KBOX_HMAC256_LEN;
  } else if (a->mac_ctx != NULL) {
    EVP_MAC_CTX *ctx = a->mac_ctx;
    if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1) abort();
    for (int i = 0; i < 4; i++) EVP_MAC_update(ctx, part[i], len[i]);
    if (EVP_MAC_final(ctx, out, &outl, sizeof(out)) != 1) abort();
  } else {
    return; /* empty key: unsigned */
  }
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < outl; i++) {
    hex[2 * i] = digits[out[i] >> 4];
    hex[2 * i + 1] = digits[out[i] & 15];
  }
  hex[2 * outl] = '\0';
}

/* Signature over the four parts following the signature frame. */
static void sign_frames(struct kbox_auth *a, const struct kbox_frames *f, size_t delim, char *hex) {
  const void *part[4];
  size_t len[4];
  for (int i = 0; i < 4; i++) {
    part[i] = kbox_frame_data(f, delim + 2 + (size_t)i);
    len[i] = kbox_frame_size(f, delim + 2 + (size_t)i);
  }
  kbox_auth_sign(a, part, len, hex);
}

/* Does the frame look like a JSON object ("{...}" after whitespace)? */
static bool looks_like_object(const struct kbox_frames *f, size_t i) {
  const char *p = kbox_frame_data(f, i);
  size_t n = kbox_frame_size(f, i);
  while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == '\t')) n--;
  size_t k = 0;
  while (k < n && (p[k] == ' ' || p[k] == '\n' || p[k] == '\r' || p[k] == '\t')) k++;
  return n - k >= 2 && p[k] == '{' && p[n - 1] == '}';
}

/* The header must be valid JSON and carry string msg_id and msg_type (checked without building
   a tree: this runs for every message the broker forwards). */
static bool header_ok(const struct kbox_frames *f, size_t i, struct kbox_jspan *type) {
  if (kbox_frame_size(f, i) > 65536) return false;
  static const char *const keys[] = {"msg_type", "msg_id"};
  struct kbox_jspan v[2];
  if (!kbox_jscan_object(kbox_frame_data(f, i), kbox_frame_size(f, i), keys, 2, v) || v[0].p == NULL || v[1].p == NULL)
    return false;
  *type = v[0];
  return true;
}

const char *kbox_wire_check(struct kbox_auth *a, const struct kbox_frames *f, size_t *delim) {
  struct kbox_jspan type;
  return kbox_wire_check_type(a, f, delim, &type);
}

const char *kbox_wire_check_type(struct kbox_auth *a, const struct kbox_frames *f, size_t *delim,
                                 struct kbox_jspan *msg_type) {
  size_t d = 0;
  while (d < f->n && d <= KBOX_WIRE_MAX_IDENTS &&
         !(kbox_frame_size(f, d) == strlen(KBOX_WIRE_DELIM) && memcmp(kbox_frame_data(f, d), KBOX_WIRE_DELIM, strlen(KBOX_WIRE_DELIM)) == 0))
    d++;
  if (d >= f->n || d > KBOX_WIRE_MAX_IDENTS) return "no <IDS|MSG> delimiter (not a Jupyter message)";
  if (f->n < d + 6) return "truncated message (fewer than 4 parts after the signature)";
  for (size_t i = d + 2; i < d + 6; i++)
    if (!looks_like_object(f, i)) return "a header/parent/metadata/content part is not a JSON object";
  if (a != NULL && a->hexlen > 0) { /* a key was given: the signature must match */
    size_t sl = kbox_frame_size(f, d + 1);
    if (sl == 0) return "missing signature";
    if (sl != a->hexlen) return "bad signature";
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    sign_frames(a, f, d, hex);
    if (CRYPTO_memcmp(hex, kbox_frame_data(f, d + 1), sl) != 0) return "bad signature";
  }
  if (!header_ok(f, d + 2, msg_type)) return "header lacks msg_id/msg_type or is not valid JSON";
  *delim = d;
  return NULL;
}

void kbox_wire_resign(struct kbox_auth *a, struct kbox_frames *f, size_t delim) {
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  sign_frames(a, f, delim, hex);
  kbox_frames_set(f, delim + 1, hex, strlen(hex));
}

const char *kbox_wire_parse(const struct kbox_frames *f, size_t delim, struct kbox_wire_msg *m) {
  memset(m, 0, sizeof(*m));
  json_t **dst[4] = {&m->header, &m->parent, &m->metadata, &m->content};
  for (int i = 0; i < 4; i++) {
    size_t k = delim + 2 + (size_t)i;
    if (k >= f->n) return "truncated message";
    *dst[i] = json_loadb(kbox_frame_data(f, k), kbox_frame_size(f, k), 0, NULL);
    if (!json_is_object(*dst[i])) {
      kbox_wire_msg_free(m);
      return "a message part is not a JSON object";
    }
  }
  m->msg_type = json_string_value(json_object_get(m->header, "msg_type"));
  m->msg_id = json_string_value(json_object_get(m->header, "msg_id"));
  if (m->msg_type == NULL || m->msg_id == NULL) {
    kbox_wire_msg_free(m);
    return "header lacks msg_id/msg_type";
  }
  return NULL;
}

void kbox_wire_msg_free(struct kbox_wire_msg *m) {
  json_decref(m->header);
  json_decref(m->parent);
  json_decref(m->metadata);
  json_decref(m->content);
  memset(m, 0, sizeof(*m));
}

void kbox_wire_new_id(char out[33]) {
  unsigned char raw[16];
  if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    for (size_t i = 0; i < sizeof(raw); i++) raw[i] = (unsigned char)(ts.tv_nsec >> (i % 8) ^ rand());
  }
  raw[6] = (raw[6] & 0x0f) | 0x40; /* uuid4 shape */
  raw[8] = (raw[8] & 0x3f) | 0x80;
  for (size_t i = 0; i < sizeof(raw); i++) sprintf(out + 2 * i, "%02x", raw[i]);
  out[32] = '\0';
}

/* ISO 8601 UTC timestamp with microseconds, as Jupyter writes them. */
static void now_iso(char *buf, size_t n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, n, "%s.%06ldZ", base, (long)tv.tv_usec);
}

/* Append a JSON value as a compact frame. */
static void add_json(struct kbox_frames *f, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  if (s == NULL) kbox_oom(); /* jansson's only failure for a value kbox built */
  kbox_frames_add(f, s, strlen(s));
  free(s);
}

void kbox_wire_build(struct kbox_auth *a, struct kbox_frames *out, const void *ident, size_t identlen,
                     const char *session, const char *msg_type, json_t *parent, json_t *content,
                     char msg_id_out[33]) {
  char msg_id[33], date[48];
  kbox_wire_new_id(msg_id);
  now_iso(date, sizeof(date));
  json_t *header = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", msg_id, "msg_type", msg_type,
                             "username", "kbox", "session", session, "date", date, "version", "5.3");
  json_t *empty = json_object();
  kbox_frames_clear(out);
  if (identlen > 0) kbox_frames_add(out, ident, identlen);
  size_t delim = out->n;
  kbox_frames_add(out, KBOX_WIRE_DELIM, strlen(KBOX_WIRE_DELIM));
  kbox_frames_add(out, "", 0);
  add_json(out, header);
  add_json(out, parent != NULL ? parent : empty);
  add_json(out, empty);
  add_json(out, content != NULL ? content : empty);
  kbox_wire_resign(a, out, delim);
  json_decref(header);
  json_decref(empty);
  if (msg_id_out != NULL) memcpy(msg_id_out, msg_id, 33);
}
