/* The SHA-256 of the cache keys (src/security/sha256.c): the FIPS 180-4 example digests, through
   the CPU's SHA extensions where this machine has them and through the portable code, and both
   paths agreeing on random inputs fed in random pieces (a cache key computed one way and checked
   the other must match). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "security/sha256.h"

static void hex_of(const void *data, size_t n, size_t piece, char out[65]) {
  struct kbox_sha256 s;
  unsigned char d[32];
  kbox_sha256_init(&s);
  const unsigned char *p = data;
  while (n > 0) {
    size_t take = piece != 0 && piece < n ? piece : n;
    kbox_sha256_update(&s, p, take);
    p += take, n -= take;
  }
  kbox_sha256_final(&s, d);
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check_vectors(void) {
  static const struct {
    const char *in;
    const char *hex;
  } v[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  char got[65];
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    hex_of(v[i].in, strlen(v[i].in), 0, got);
    cr_assert_str_eq(got, v[i].hex, "sha256(\"%s\")", v[i].in);
  }
  size_t n = 1000000;
  char *a = malloc(n);
  memset(a, 'a', n);
  hex_of(a, n, 4093, got); /* a million 'a', fed in odd pieces */
  cr_assert_str_eq(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(a);
}

Test(sha256, fips_vectors_default_path) {
  check_vectors();
}

Test(sha256, fips_vectors_portable_path) {
  kbox_sha256_use_portable(true);
  check_vectors();
}

Test(sha256, both_paths_agree_on_random_inputs) {
  srand(12345);
  static unsigned char buf[5000];
  for (int round = 0; round < 200; round++) {
    size_t n = (size_t)rand() % sizeof(buf);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)rand();
    size_t piece = (size_t)rand() % 130;
    char fast[65], slow[65];
    kbox_sha256_use_portable(false);
    hex_of(buf, n, piece, fast);
    kbox_sha256_use_portable(true);
    hex_of(buf, n, piece, slow);
    cr_assert_str_eq(fast, slow, "%zu bytes in pieces of %zu", n, piece);
  }
}
