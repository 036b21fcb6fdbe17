/* Why not EVP_MAC (OpenSSL 3's provider interface, still used for the other schemes in wire.c):
   fetching HMAC initialises the provider machinery, which touches ~2 MB of libcrypto (kbox's RSS
   in kernel mode 10.8 -> 8.9 MB), and every init/update/final goes through its dispatch layers.
   SHA256_Init/Update/Final are the same SHA-256 code (SHA-NI where the CPU has it) without them;
   OpenSSL 3 marks them deprecated, not removed. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "kernel/hmac256.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define BLOCK 64 /* SHA-256 block size */

struct kbox_hmac256 {
  SHA256_CTX inner, outer; /* after absorbing key ^ ipad, key ^ opad */
};

struct kbox_hmac256 *kbox_hmac256_new(const void *key, size_t keylen) {
  struct kbox_hmac256 *h = xcalloc(1, sizeof(*h));
  unsigned char k[BLOCK] = {0}, pad[BLOCK];
  if (keylen > BLOCK) SHA256(key, keylen, k);
  else memcpy(k, key, keylen);
  for (int i = 0; i < BLOCK; i++) pad[i] = k[i] ^ 0x36;
  SHA256_Init(&h->inner);
  SHA256_Update(&h->inner, pad, BLOCK);
  for (int i = 0; i < BLOCK; i++) pad[i] = k[i] ^ 0x5c;
  SHA256_Init(&h->outer);
  SHA256_Update(&h->outer, pad, BLOCK);
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(pad, sizeof(pad));
  return h;
}

void kbox_hmac256_free(struct kbox_hmac256 *h) {
  if (h == NULL) return;
  OPENSSL_cleanse(h, sizeof(*h));
  free(h);
}

void kbox_hmac256(const struct kbox_hmac256 *h, const void *const *part, const size_t *len, size_t nparts,
                  unsigned char out[KBOX_HMAC256_LEN]) {
  SHA256_CTX c = h->inner; /* a state is plain data: copying it resumes after the pad */
  for (size_t i = 0; i < nparts; i++) SHA256_Update(&c, part[i], len[i]);
  unsigned char ih[KBOX_HMAC256_LEN];
  SHA256_Final(ih, &c);
  c = h->outer;
  SHA256_Update(&c, ih, sizeof(ih));
  SHA256_Final(out, &c);
  OPENSSL_cleanse(&c, sizeof(c));
}
