/* A per-user cache of compiled seccomp programs, so that `kbox run` does not run libseccomp's
   compiler on every start. Keyed by the profile's seccomp section, kbox's version, libseccomp's
   version and the native architecture. Every failure here is silent: the caller compiles. */
#ifndef KBOX_SECCOMP_CACHE_H
#define KBOX_SECCOMP_CACHE_H

#include <stdbool.h>

#include "security/profile.h"
#include "security/seccomp.h"

#define KBOX_SECCOMP_KEY_LEN 64 /* hex SHA-256 */

/* The cache directory: $KBOX_SECCOMP_CACHE_DIR, else /var/cache/kbox/seccomp for euid 0, else
   $XDG_CACHE_HOME/kbox/seccomp or ~/.cache/kbox/seccomp. Returns false when there is none. */
bool kbox_seccomp_cache_dir(char *out, size_t n);
/* The cache key of def (hex, NUL-terminated) for this kbox, libseccomp and architecture. */
void kbox_seccomp_cache_key(const struct kbox_sc_def *def, char out[KBOX_SECCOMP_KEY_LEN + 1]);
/* Load the programs stored under key into *out. False (and *out empty) when the file is missing or
   not to be trusted: not a regular file owned by the euid, group/other writable, or malformed. */
bool kbox_seccomp_cache_load(const char *dir, const char *key, struct kbox_seccomp_compiled *out);
/* Store c under key (tmp file + rename, dir 0700, file 0600). Failures are ignored. */
void kbox_seccomp_cache_store(const char *dir, const char *key, const struct kbox_seccomp_compiled *c);

/* The outcome of a profile file (its default limits and the key of its filter), so that a start
   with an unchanged profile neither parses its JSON nor hashes its rules. Keyed by the file's bytes
   with kbox's version and build id, libseccomp's version and the native architecture; only a profile that loaded
   and compiled without error is ever stored. Same directory and same trust rules as above. */
void kbox_profile_cache_key(const char *text, size_t len, char out[KBOX_SECCOMP_KEY_LEN + 1]);
bool kbox_profile_cache_load(const char *dir, const char *key, struct kbox_profile_limits *lim,
                             char seccomp_key[KBOX_SECCOMP_KEY_LEN + 1]);
void kbox_profile_cache_store(const char *dir, const char *key, const struct kbox_profile_limits *lim,
                              const char *seccomp_key);

#endif
