/* A small SHA-256 (FIPS 180-4) for cache keys: calling into libcrypto costs more start-up time
   (OpenSSL's one-time initialisation) than the hashing itself. */
#ifndef KBOX_SHA256_H
#define KBOX_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kbox_sha256 {
  uint32_t h[8];
  uint64_t total;        /* bytes hashed so far */
  unsigned char buf[64]; /* the pending partial block */
  size_t used;
};

void kbox_sha256_init(struct kbox_sha256 *s);
void kbox_sha256_update(struct kbox_sha256 *s, const void *data, size_t n);
void kbox_sha256_final(struct kbox_sha256 *s, unsigned char out[32]);
/* Tests: hash with the portable code even where the CPU's SHA extensions are used. */
void kbox_sha256_use_portable(bool on);

#endif
