#include "security/sha256.h"

#include <stdbool.h>
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* Mix one 64-byte block into the state. */
static void block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void kbox_sha256_init(struct kbox_sha256 *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memset(s, 0, sizeof(*s));
  memcpy(s->h, iv, sizeof(iv));
}

/* The portable path: every block through block(). */
static void blocks_portable(uint32_t h[8], const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) block(h, p + 64 * i);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

/* The same blocks with the x86 SHA extensions (about 25 times fewer instructions: the start-up of
   every `kbox run` hashes its ~20 KB profile). The state lives as two vectors, ABEF and CDGH, the
   order the sha256rnds2 instruction takes; each 4-word group of the schedule comes from the four
   before it (msg1 adds sigma0 of the next words, msg2 sigma1 of the last two). */
__attribute__((target("sha,sse4.1,ssse3"))) static void blocks_shani(uint32_t h[8], const unsigned char *p, size_t n) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1); /* b a d c */
  __m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); /* h g f e */
  __m128i abef = _mm_alignr_epi8(dcba, hgfe, 8);                                    /* f e b a */
  __m128i cdgh = _mm_blend_epi16(hgfe, dcba, 0xF0);                                 /* h g d c */
  for (size_t b = 0; b < n; b++, p += 64) {
    __m128i abef0 = abef, cdgh0 = cdgh, x[16];
    for (int i = 0; i < 16; i++) {
      if (i < 4) x[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
      else
        x[i] = _mm_sha256msg2_epu32(
            _mm_add_epi32(_mm_sha256msg1_epu32(x[i - 4], x[i - 3]), _mm_alignr_epi8(x[i - 1], x[i - 2], 4)), x[i - 1]);
      __m128i m = _mm_add_epi32(x[i], _mm_loadu_si128((const __m128i *)&K[4 * i]));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m); /* two rounds: the result is the new ABEF */
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef0);
    cdgh = _mm_add_epi32(cdgh, cdgh0);
  }
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B); /* a b e f */
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1); /* g h c d */
  _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* SHA, SSSE3 and SSE4.1 on this CPU (cpuid leaves 7 and 1). */
static bool have_shani(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 29))) return false;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & (1u << 9)) && (c & (1u << 19));
}
#else
static bool have_shani(void) { return false; }
#define blocks_shani blocks_portable
#endif

static int use_portable = -1; /* -1: not decided yet */

void kbox_sha256_use_portable(bool on) { use_portable = on || !have_shani(); }

static void blocks(uint32_t h[8], const unsigned char *p, size_t n) {
  if (use_portable < 0) use_portable = !have_shani();
  if (use_portable) blocks_portable(h, p, n);
  else blocks_shani(h, p, n);
}

void kbox_sha256_update(struct kbox_sha256 *s, const void *data, size_t n) {
  const unsigned char *p = data;
  s->total += n;
  if (s->used > 0) { /* complete the pending block first */
    size_t take = 64 - s->used < n ? 64 - s->used : n;
    memcpy(s->buf + s->used, p, take);
    s->used += take, p += take, n -= take;
    if (s->used < 64) return;
    blocks(s->h, s->buf, 1);
    s->used = 0;
  }
  if (n >= 64) { /* whole blocks straight from the input */
    blocks(s->h, p, n / 64);
    p += n - n % 64;
    n %= 64;
  }
  memcpy(s->buf, p, n);
  s->used = n;
}

void kbox_sha256_final(struct kbox_sha256 *s, unsigned char out[32]) {
  uint64_t bits = s->total * 8;
  unsigned char pad = 0x80, zero = 0, len[8];
  kbox_sha256_update(s, &pad, 1);
  while (s->used != 56) kbox_sha256_update(s, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
  kbox_sha256_update(s, len, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(s->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)s->h[i];
  }
}
