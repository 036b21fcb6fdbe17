/* HMAC-SHA256 (RFC 2104) on libcrypto's SHA-256 primitive, with the key's inner and outer pads
   absorbed once per key: the scheme of nearly every Jupyter connection, signed and checked for
   every message the broker forwards. */
#ifndef KBOX_KERNEL_HMAC256_H
#define KBOX_KERNEL_HMAC256_H

#include <stddef.h>

#define KBOX_HMAC256_LEN 32

struct kbox_hmac256; /* opaque: the two pre-keyed SHA-256 states */

/* Key a new state (keys longer than SHA-256's 64-byte block are hashed first). NULL: out of memory. */
struct kbox_hmac256 *kbox_hmac256_new(const void *key, size_t keylen);
void kbox_hmac256_free(struct kbox_hmac256 *h);
/* The MAC of the concatenation of nparts parts. */
void kbox_hmac256(const struct kbox_hmac256 *h, const void *const *part, const size_t *len, size_t nparts,
                  unsigned char out[KBOX_HMAC256_LEN]);

#endif
