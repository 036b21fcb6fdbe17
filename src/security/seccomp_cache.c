#include "security/seccomp_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "security/sha256.h"
#include "util/cleanup.h"

/* File layout: this header (the size of two BPF instructions), then the programs back to back. */
struct cache_header {
  char magic[8];   /* "kboxbpf1" */
  uint32_t len[2]; /* instructions of each program, in install order; 0 = absent */
};
_Static_assert(sizeof(struct cache_header) % sizeof(struct sock_filter) == 0, "header is whole instructions");

static const char magic[8] = {'k', 'b', 'o', 'x', 'b', 'p', 'f', '1'};

/* mkdir that accepts an existing directory. */
static bool ensure_dir(const char *path) { return mkdir(path, 0700) == 0 || errno == EEXIST; }

bool kbox_seccomp_cache_dir(char *out, size_t n) {
  const char *env = getenv("KBOX_SECCOMP_CACHE_DIR");
  if (env != NULL && env[0] != '\0') return (size_t)snprintf(out, n, "%s", env) < n;
  if (geteuid() == 0) return (size_t)snprintf(out, n, "/var/cache/kbox/seccomp") < n;
  const char *xdg = getenv("XDG_CACHE_HOME");
  if (xdg != NULL && xdg[0] == '/') return (size_t)snprintf(out, n, "%s/kbox/seccomp", xdg) < n;
  const char *home = getenv("HOME");
  if (home != NULL && home[0] == '/') return (size_t)snprintf(out, n, "%s/.cache/kbox/seccomp", home) < n;
  return false;
}

static void digest_u64(struct kbox_sha256 *md, uint64_t v) { kbox_sha256_update(md, &v, sizeof(v)); }

/* Strings are length-prefixed so that no two different lists hash the same bytes. */
static void digest_str(struct kbox_sha256 *md, const char *s) {
  digest_u64(md, strlen(s));
  kbox_sha256_update(md, s, strlen(s));
}

void kbox_seccomp_cache_key(const struct kbox_sc_def *d, char out[KBOX_SECCOMP_KEY_LEN + 1]) {
  struct kbox_sha256 ctx, *md = &ctx;
  kbox_sha256_init(md);
  const struct scmp_version *v = seccomp_version();
  digest_str(md, "kbox " KBOX_VERSION);
  digest_u64(md, ((uint64_t)v->major << 32) | ((uint64_t)v->minor << 16) | v->micro);
  digest_u64(md, seccomp_arch_native());
  digest_u64(md, d->default_action);
  digest_u64(md, d->n_arches);
  for (size_t i = 0; i < d->n_arches; i++) digest_u64(md, d->arches[i]);
  digest_u64(md, d->n_rules);
  for (size_t i = 0; i < d->n_rules; i++) {
    const struct kbox_sc_rule *r = &d->rules[i];
    digest_u64(md, r->action);
    digest_u64(md, r->n_names);
    for (size_t k = 0; k < r->n_names; k++) digest_str(md, r->names[k]);
    digest_u64(md, r->n_args);
    for (unsigned a = 0; a < r->n_args; a++) {
      digest_u64(md, r->args[a].index);
      digest_u64(md, (uint64_t)r->args[a].op);
      digest_u64(md, r->args[a].value);
      digest_u64(md, r->args[a].value_two);
    }
  }
  unsigned char h[32];
  kbox_sha256_final(md, h);
  for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Is this open file ours alone: a regular file owned by the euid that nobody else may write? */
static bool trusted(const struct stat *st) {
  return S_ISREG(st->st_mode) && st->st_uid == geteuid() && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* Open dir only when it is a directory of the euid that nobody else may write (no symlink). */
static int open_trusted_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return -1;
  if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Check the header against the file size and split the body into programs. */
static bool parse(const struct cache_header *h, size_t body_insns, struct kbox_seccomp_compiled *out) {
  if (memcmp(h->magic, magic, sizeof(magic)) != 0) return false;
  if ((h->len[0] == 0 && h->len[1] != 0) || h->len[0] > BPF_MAXINSNS || h->len[1] > BPF_MAXINSNS) return false;
  if ((size_t)h->len[0] + h->len[1] != body_insns) return false;
  for (int i = 0; i < 2 && h->len[i] != 0; i++) out->progs[out->n++].len = (unsigned short)h->len[i];
  return true;
}

bool kbox_seccomp_cache_load(const char *dir, const char *key, struct kbox_seccomp_compiled *out) {
  memset(out, 0, sizeof(*out));
  cleanup_close int dfd = open_trusted_dir(dir);
  if (dfd < 0) return false;
  char name[KBOX_SECCOMP_KEY_LEN + 8];
  snprintf(name, sizeof(name), "%s.bpf", key);
  cleanup_close int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || !trusted(&st)) return false;
  size_t size = (size_t)st.st_size, insn = sizeof(struct sock_filter);
  if (size < sizeof(struct cache_header) || size % insn != 0 ||
      size > sizeof(struct cache_header) + 2 * BPF_MAXINSNS * insn)
    return false;
  cleanup_free unsigned char *buf = malloc(size);
  if (buf == NULL || pread(fd, buf, size, 0) != (ssize_t)size) return false;
  struct cache_header h;
  memcpy(&h, buf, sizeof(h));
  if (!parse(&h, (size - sizeof(h)) / insn, out)) {
    memset(out, 0, sizeof(*out));
    return false;
  }
  size_t off = sizeof(h);
  for (size_t i = 0; i < out->n; i++) {
    out->progs[i].filter = malloc(out->progs[i].len * insn);
    if (out->progs[i].filter == NULL) abort();
    memcpy(out->progs[i].filter, buf + off, out->progs[i].len * insn);
    off += out->progs[i].len * insn;
  }
  return true;
}

/* Write all of buf or fail. */
static bool write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/* mkdir -p of dir's last two components (…/kbox/seccomp); the parents must exist. */
static void make_dirs(const char *dir) {
  char parent[4096];
  snprintf(parent, sizeof(parent), "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash != NULL && slash != parent) {
    *slash = '\0';
    char *up = strrchr(parent, '/');
    if (up != NULL && up != parent) {
      *up = '\0';
      ensure_dir(parent); /* e.g. ~/.cache */
      *up = '/';
    }
    ensure_dir(parent);
  }
  ensure_dir(dir);
}

void kbox_seccomp_cache_store(const char *dir, const char *key, const struct kbox_seccomp_compiled *c) {
  make_dirs(dir);
  cleanup_close int dfd = open_trusted_dir(dir);
  if (dfd < 0) return;
  char name[KBOX_SECCOMP_KEY_LEN + 8], tmp[KBOX_SECCOMP_KEY_LEN + 32];
  snprintf(name, sizeof(name), "%s.bpf", key);
  snprintf(tmp, sizeof(tmp), "%s.tmp.%d", key, (int)getpid());
  cleanup_close int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  struct cache_header h = {.len = {0, 0}};
  memcpy(h.magic, magic, sizeof(magic));
  for (size_t i = 0; i < c->n && i < 2; i++) h.len[i] = c->progs[i].len;
  bool ok = write_all(fd, &h, sizeof(h));
  for (size_t i = 0; ok && i < c->n && i < 2; i++)
    ok = write_all(fd, c->progs[i].filter, c->progs[i].len * sizeof(struct sock_filter));
  if (!ok || renameat(dfd, tmp, dfd, name) < 0) unlinkat(dfd, tmp, 0);
}
