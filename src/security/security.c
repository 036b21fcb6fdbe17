#include "security/security.h"

#include <stdlib.h>
#include <string.h>

#include "security/seccomp_cache.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"

static struct kbox_security *loaded; /* every profile this process has loaded */

void kbox_security_fill_limits(const struct kbox_spec_sec *sec, struct kbox_spec_limits *lim) {
  const struct kbox_profile_limits *l = &sec->loaded->profile->limits;
  if (l->memory_set && !lim->memory_set) lim->memory_bytes = l->memory_bytes;
  if (l->swap_set && !lim->swap_set) lim->swap_bytes = l->swap_bytes;
  if (l->disk_set && !lim->disk_set) lim->disk_bytes = l->disk_bytes;
  if (l->pids_set && !lim->pids_set) lim->pids = l->pids;
  if (l->cpus_set && !lim->cpus_set) lim->cpus = l->cpus;
  if (l->nofile_set && !lim->nofile_set) lim->nofile = l->nofile;
}

void kbox_security_fill_net(const struct kbox_spec_sec *sec, struct kbox_spec_sandbox *sb, char **audit_path) {
  const struct kbox_profile *p = sec->loaded->profile;
  if (!sb->net_set && p->net_allow.n > 0) {
    sb->net = KBOX_NET_ALLOW;
    for (size_t i = 0; i < p->net_allow.n; i++) kbox_strv_add(&sb->net_allow, p->net_allow.v[i]);
  }
  if (sb->net_max_bytes == 0) sb->net_max_bytes = p->net_max_bytes;
  if (*audit_path == NULL && p->audit != NULL) *audit_path = xstrdup(p->audit);
}

static void security_free(struct kbox_security *s) {
  kbox_seccomp_compiled_free(&s->filter);
  kbox_profile_free(s->profile);
  free(s->path);
  free(s);
}

/* The profile's filter from the per-user cache (dir, when not NULL), else compiled by libseccomp
   (and cached); key receives the filter's cache key. */
static int compile_cached(const char *dir, const struct kbox_sc_def *def, struct kbox_seccomp_compiled *out,
                          char key[KBOX_SECCOMP_KEY_LEN + 1], kbox_error_t *err) {
  if (dir != NULL) {
    kbox_seccomp_cache_key(def, key);
    if (kbox_seccomp_cache_load(dir, key, out)) return 0;
  }
  if (kbox_seccomp_compile(def, out, err) < 0) return -1;
  if (dir != NULL) kbox_seccomp_cache_store(dir, key, out);
  return 0;
}

/* An unchanged profile seen before: its limits and filter from the cache, without parsing it
   (its rules are not needed once the filter exists). */
static bool from_cache(const char *dir, const char *pkey, struct kbox_security *s) {
  char skey[KBOX_SECCOMP_KEY_LEN + 1];
  struct kbox_profile_limits lim;
  if (!kbox_profile_cache_load(dir, pkey, &lim, skey) || !kbox_seccomp_cache_load(dir, skey, &s->filter)) return false;
  s->profile = xcalloc(1, sizeof(*s->profile));
  s->profile->path = xstrdup(s->path);
  s->profile->limits = lim;
  return true;
}

/* The cache's record carries a profile's limits and filter only: a profile with anything more
   (network rules, an audit log, "warm": false, capabilities kept) is parsed every time. */
static bool record_holds(const struct kbox_profile *p) {
  return p->net_allow.n == 0 && p->net_max_bytes == 0 && p->audit == NULL && !p->no_warm && p->caps_keep == 0;
}

/* Parse and compile the profile (from its bytes when they were read), caching the outcome. */
static int load_and_compile(const char *dir, const char *pkey, const char *text, size_t len, struct kbox_security *s,
                            kbox_error_t *err) {
  char skey[KBOX_SECCOMP_KEY_LEN + 1];
  int rc = text != NULL ? kbox_profile_parse_bytes(s->path, text, len, &s->profile, err)
                        : kbox_profile_load(s->path, &s->profile, err);
  if (rc < 0) return -1;
  if (compile_cached(dir, &s->profile->seccomp, &s->filter, skey, err) < 0) return kbox_error_prefix(err, "profile %s", s->path);
  if (dir != NULL && text != NULL && record_holds(s->profile)) kbox_profile_cache_store(dir, pkey, &s->profile->limits, skey);
  return 0;
}

/* The loaded profile at path, loading and compiling it on first use. */
static struct kbox_security *get_loaded(const char *path, kbox_error_t *err) {
  for (struct kbox_security *s = loaded; s != NULL; s = s->next)
    if (strcmp(s->path, path) == 0) return s;
  struct kbox_security *s = xcalloc(1, sizeof(*s));
  s->path = xstrdup(path);
  char dir[4096], pkey[KBOX_SECCOMP_KEY_LEN + 1];
  bool have_dir = kbox_seccomp_cache_dir(dir, sizeof(dir));
  cleanup_free char *text = NULL;
  size_t len = 0;
  kbox_error_t unread = NULL; /* an unreadable file: kbox_profile_load says why */
  if (have_dir && kbox_read_file(path, 1 << 20, &text, &len, &unread) < 0) kbox_error_free(&unread);
  if (text != NULL) kbox_profile_cache_key(text, len, pkey);
  if ((text == NULL || !from_cache(dir, pkey, s)) &&
      load_and_compile(have_dir ? dir : NULL, pkey, text, len, s, err) < 0) {
    security_free(s);
    return NULL;
  }
  s->next = loaded;
  loaded = s;
  return s;
}

int kbox_security_prepare(struct kbox_spec_sec *sec, kbox_error_t *err) {
  cleanup_free char *path = NULL;
  if (kbox_profile_find(sec->profile ? sec->profile : "default", &path, err) < 0) return -1;
  struct kbox_security *s = get_loaded(path, err);
  if (s == NULL) return -1;
  if (sec->seccomp_unconfined)
    kbox_warn("--seccomp=unconfined: the workload runs WITHOUT a seccomp filter (debugging only; every syscall "
              "is reachable, only namespaces and dropped capabilities protect the host)");
  sec->loaded = s;
  return 0;
}

int kbox_security_apply(const struct kbox_spec_sec *sec, kbox_error_t *err) {
  if (sec->seccomp_unconfined) return 0;
  if (sec->loaded == NULL) return kbox_error_make(err, 0, "internal: no security profile was prepared");
  return kbox_seccomp_install(&sec->loaded->filter, err);
}

