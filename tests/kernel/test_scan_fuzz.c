/* Seeded fuzz of the broker's input scanners: jscan (every JSON part the broker inspects) against
   jansson as the oracle, and kbox_wire_check on messages whose frames are mutated corpus entries.
   Inputs are exact-size heap buffers, so the sanitizer build catches any read past a frame. The
   corpus is tests/kernel/corpus/; KBOX_SCAN_FUZZ_SEED and KBOX_SCAN_FUZZ_ROUNDS replay or lengthen. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kernel/jscan.h"
#include "kernel/wire.h"
#include "testlib.h"

struct input {
  char *p;
  size_t n;
};

static uint64_t rng_state;
static uint64_t next_rand(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

/* The corpus files, each in its own buffer. */
static size_t load_corpus(struct input *in, size_t max) {
  const char *root = getenv("KBOX_SOURCE_ROOT");
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s/tests/kernel/corpus", root ? root : ".");
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "corpus %s", dir);
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max) {
    if (e->d_name[0] == '.') continue;
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char buf[65536];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    in[n].p = malloc(len ? len : 1);
    memcpy(in[n].p, buf, len);
    in[n].n = len;
    n++;
  }
  closedir(d);
  cr_assert_gt(n, 5, "the corpus is missing");
  return n;
}

/* A mutation of src in a fresh exact-size buffer: flips, interesting bytes, cuts, repeats. */
static struct input mutate(const struct input *src) {
  static const char tokens[] = "{}[]\":,\\-+.eE0123456789tfnu \t\n\xc3\xa9\xed\xa0\xf0\x9f\x80\xff";
  size_t cap = src->n * 2 + 64;
  char *b = malloc(cap);
  size_t n = src->n;
  memcpy(b, src->p, n);
  int edits = 1 + (int)(next_rand() % 4);
  for (int k = 0; k < edits; k++) {
    size_t at = n ? next_rand() % n : 0;
    switch (next_rand() % 6) {
    case 0: if (n) b[at] ^= (char)(1u << (next_rand() % 8)); break;
    case 1: if (n) b[at] = tokens[next_rand() % (sizeof(tokens) - 1)]; break;
    case 2: if (n < cap) { memmove(b + at + 1, b + at, n - at); b[at] = tokens[next_rand() % (sizeof(tokens) - 1)]; n++; } break;
    case 3: if (n) { memmove(b + at, b + at + 1, n - at - 1); n--; } break;
    case 4: n = at; break;
    default: { /* repeat a span */
      size_t len = n - at < 16 ? n - at : 16;
      if (n + len <= cap) { memmove(b + at + len, b + at, n - at); n += len; }
    }
    }
  }
  struct input out = {malloc(n ? n : 1), n};
  memcpy(out.p, b, n);
  free(b);
  return out;
}

/* jansson's verdict; false in *usable when it refuses for reasons JSON itself allows (numbers
   beyond its range) or nesting beyond jscan's documented limit. */
static bool oracle(const struct input *in, bool *usable) {
  int depth = 0, maxd = 0;
  for (size_t i = 0; i < in->n; i++) {
    if (in->p[i] == '{' || in->p[i] == '[') maxd = ++depth > maxd ? depth : maxd;
    else if (in->p[i] == '}' || in->p[i] == ']') depth--;
  }
  json_error_t je;
  json_t *j = json_loadb(in->p, in->n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  bool ok = json_is_object(j);
  json_decref(j);
  *usable = maxd < KBOX_JSCAN_MAX_DEPTH - 1 && (j != NULL || (strstr(je.text, "overflow") == NULL && strstr(je.text, "too big") == NULL));
  /* jansson takes a NUL byte after a number for the end of the token and goes on: jscan refuses
     that input, which is the stricter (safe) side */
  if (ok && memchr(in->p, '\0', in->n) != NULL) *usable = false;
  return ok;
}

/* The input with non-printable bytes as \xNN, for failure messages. */
static const char *shown(const struct input *in) {
  static char out[4096];
  size_t o = 0;
  for (size_t i = 0; i < in->n && o + 5 < sizeof(out); i++) {
    unsigned char c = (unsigned char)in->p[i];
    o += (size_t)(c >= 0x20 && c < 0x7f ? snprintf(out + o, 2, "%c", c) : snprintf(out + o, 5, "\\x%02x", c));
  }
  out[o] = '\0';
  return out;
}

/* jscan never reads outside the buffer, agrees with the oracle, and its spans lie inside. */
static void check_scan(const struct input *in, uint64_t seed, size_t round) {
  static const char *const keys[] = {"msg_type", "msg_id", "execution_state", "a"};
  struct kbox_jspan v[4];
  bool got = kbox_jscan_object(in->p, in->n, keys, 4, v);
  bool usable;
  bool want = oracle(in, &usable);
  if (usable) cr_assert_eq(got, want, "seed %llu round %zu: jscan %d, jansson %d on %s", (unsigned long long)seed, round, got, want, shown(in));
  if (!got) return;
  for (int i = 0; i < 4; i++)
    if (v[i].p != NULL) cr_assert(v[i].p >= in->p && v[i].p + v[i].n <= in->p + in->n, "span outside the buffer");
}

/* A message whose JSON parts are mutated inputs: the check returns (a reason or NULL) without crashing. */
static void check_wire(struct kbox_auth *a, struct input parts[4]) {
  struct kbox_frames f;
  kbox_frames_init(&f);
  kbox_frames_add(&f, "ident", 5);
  kbox_frames_add(&f, KBOX_WIRE_DELIM, strlen(KBOX_WIRE_DELIM));
  kbox_frames_add(&f, "", 0);
  for (int i = 0; i < 4; i++) kbox_frames_add(&f, parts[i].p, parts[i].n);
  kbox_wire_resign(a, &f, 1);
  size_t delim = 0;
  struct kbox_jspan type;
  const char *why = kbox_wire_check_type(a, &f, &delim, &type);
  if (why == NULL) {
    cr_assert_eq(delim, 1);
    cr_assert_not_null(type.p);
  }
  if (next_rand() % 4 == 0) { /* drop frames: truncated messages */
    size_t keep = next_rand() % f.n;
    while (f.n > keep) zmq_msg_close(&f.v[--f.n]);
    kbox_wire_check(a, &f, &delim);
  }
  kbox_frames_free(&f);
}

Test(scan_fuzz, jscan_and_wire_check_against_jansson, .timeout = 120) {
  const char *s = getenv("KBOX_SCAN_FUZZ_SEED");
  uint64_t seed = s ? strtoull(s, NULL, 0) : 0x6b626f78ULL;
  const char *r = getenv("KBOX_SCAN_FUZZ_ROUNDS");
  size_t rounds = r ? strtoull(r, NULL, 0) : 200000;
  rng_state = seed ? seed : 1;
  fprintf(stderr, "scan fuzz: seed %llu, %zu rounds (KBOX_SCAN_FUZZ_SEED, KBOX_SCAN_FUZZ_ROUNDS)\n", (unsigned long long)seed, rounds);
  struct input corpus[64];
  size_t nc = load_corpus(corpus, 64);
  struct kbox_auth a;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "hmac-sha256", "fuzz-key", &err), 0);
  for (size_t i = 0; i < nc; i++) check_scan(&corpus[i], seed, 0);
  for (size_t round = 1; round <= rounds; round++) {
    struct input m = mutate(&corpus[next_rand() % nc]);
    check_scan(&m, seed, round);
    if (round % 8 == 0) {
      struct input parts[4] = {m, mutate(&corpus[next_rand() % nc]), corpus[next_rand() % nc], mutate(&corpus[next_rand() % nc])};
      check_wire(&a, parts);
      free(parts[1].p);
      free(parts[3].p);
    }
    free(m.p);
  }
  kbox_auth_free(&a);
  for (size_t i = 0; i < nc; i++) free(corpus[i].p);
}
