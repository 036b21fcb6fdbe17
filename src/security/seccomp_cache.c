#include "security/seccomp_cache.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config.h"
#include "security/sha256.h"
#include "util/alloc.h"
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

/* What every key depends on besides its subject: kbox, libseccomp and the architecture. */
static void digest_build(struct kbox_sha256 *md, const char *what) {
  const struct scmp_version *v = seccomp_version();
  digest_str(md, what);
  digest_u64(md, ((uint64_t)v->major << 32) | ((uint64_t)v->minor << 16) | v->micro);
  digest_u64(md, seccomp_arch_native());
}

/* Hex of a finished digest. */
static void digest_hex(struct kbox_sha256 *md, char out[KBOX_SECCOMP_KEY_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char h[32];
  kbox_sha256_final(md, h);
  for (unsigned i = 0; i < 32; i++) {
    out[2 * i] = hex[h[i] >> 4];
    out[2 * i + 1] = hex[h[i] & 15];
  }
  out[KBOX_SECCOMP_KEY_LEN] = '\0';
}

void kbox_seccomp_cache_key(const struct kbox_sc_def *d, char out[KBOX_SECCOMP_KEY_LEN + 1]) {
  struct kbox_sha256 ctx, *md = &ctx;
  kbox_sha256_init(md);
  digest_build(md, "kbox " KBOX_VERSION);
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
  digest_hex(md, out);
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

/* The cache entry KEY.EXT of dir opened for reading with its stat, if the directory and the file
   are trusted (ours, not writable by others, a regular file); -1 otherwise. */
static int open_entry(const char *dir, const char *key, const char *ext, struct stat *st) {
  cleanup_close int dfd = open_trusted_dir(dir);
  if (dfd < 0) return -1;
  char name[KBOX_SECCOMP_KEY_LEN + 8];
  snprintf(name, sizeof(name), "%.*s%s", KBOX_SECCOMP_KEY_LEN, key, ext);
  int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0 && (fstat(fd, st) < 0 || !trusted(st))) {
    close(fd);
    return -1;
  }
  return fd;
}

bool kbox_seccomp_cache_load(const char *dir, const char *key, struct kbox_seccomp_compiled *out) {
  memset(out, 0, sizeof(*out));
  struct stat st;
  cleanup_close int fd = open_entry(dir, key, ".bpf", &st);
  if (fd < 0) return false;
  size_t size = (size_t)st.st_size, insn = sizeof(struct sock_filter);
  if (size < sizeof(struct cache_header) || size % insn != 0 ||
      size > sizeof(struct cache_header) + 2 * BPF_MAXINSNS * insn)
    return false;
  cleanup_free unsigned char *buf = xmalloc(size);
  if (pread(fd, buf, size, 0) != (ssize_t)size) return false;
  struct cache_header h;
  memcpy(&h, buf, sizeof(h));
  if (!parse(&h, (size - sizeof(h)) / insn, out)) {
    memset(out, 0, sizeof(*out));
    return false;
  }
  size_t off = sizeof(h);
  for (size_t i = 0; i < out->n; i++) {
    out->progs[i].filter = xmalloc(out->progs[i].len * insn);
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

/* Write the n parts to DIR/KEY.EXT whole or not at all: a private temporary file (KEY.TMP.PID),
   then renamed over it. A failure leaves no file (the cache only saves time). */
static void store_file(const char *dir, const char *key, const char *ext, const char *tmp_tag,
                       const struct iovec *parts, size_t n) {
  make_dirs(dir);
  cleanup_close int dfd = open_trusted_dir(dir);
  if (dfd < 0) return;
  char name[KBOX_SECCOMP_KEY_LEN + 8], tmp[KBOX_SECCOMP_KEY_LEN + 32];
  snprintf(name, sizeof(name), "%s.%s", key, ext);
  snprintf(tmp, sizeof(tmp), "%s.%s.%d", key, tmp_tag, (int)getpid());
  cleanup_close int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  bool ok = true;
  for (size_t i = 0; ok && i < n; i++) ok = write_all(fd, parts[i].iov_base, parts[i].iov_len);
  if (!ok || renameat(dfd, tmp, dfd, name) < 0) unlinkat(dfd, tmp, 0);
}

void kbox_seccomp_cache_store(const char *dir, const char *key, const struct kbox_seccomp_compiled *c) {
  struct cache_header h = {.len = {0, 0}};
  memcpy(h.magic, magic, sizeof(magic));
  struct iovec parts[3] = {{&h, sizeof(h)}};
  size_t n = 1;
  for (size_t i = 0; i < c->n && i < 2; i++, n++) {
    h.len[i] = c->progs[i].len;
    parts[n] = (struct iovec){c->progs[i].filter, c->progs[i].len * sizeof(struct sock_filter)};
  }
  store_file(dir, key, "bpf", "tmp", parts, n);
}

/* A profile's outcome on disk: fixed size, the limits field by field, then its filter's key. */
struct profile_record {
  char magic[8];  /* "kboxprf1" */
  uint32_t set;   /* bit per limit given by the profile: memory, swap, disk, pids, cpus, nofile */
  uint32_t zero;
  uint64_t memory, swap, disk, pids, nofile;
  double cpus;
  char seccomp_key[KBOX_SECCOMP_KEY_LEN];
};

static const char profile_magic[8] = {'k', 'b', 'o', 'x', 'p', 'r', 'f', '1'};

/* dl_iterate_phdr callback: hash the GNU build id of the first object (the kbox binary). */
static int hash_build_id(struct dl_phdr_info *info, size_t size, void *arg) {
  struct kbox_sha256 *md = arg;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
      const char *name = p + sizeof(*n), *desc = name + ((n->n_namesz + 3) & ~3u);
      if (desc + n->n_descsz > end) break;
      if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
        kbox_sha256_update(md, desc, n->n_descsz);
        return 1;
      }
      p = desc + ((n->n_descsz + 3) & ~3u);
    }
  }
  return 1; /* only the first object */
}

void kbox_profile_cache_key(const char *text, size_t len, char out[KBOX_SECCOMP_KEY_LEN + 1]) {
  struct kbox_sha256 md;
  kbox_sha256_init(&md);
  digest_build(&md, "kbox profile " KBOX_VERSION);
  /* Builds of one version may parse profiles differently (development trees): the binary's
     build id ties an outcome to the code that computed it. */
  dl_iterate_phdr(hash_build_id, &md);
  digest_u64(&md, len);
  kbox_sha256_update(&md, text, len);
  digest_hex(&md, out);
}

static bool is_hex_key(const char *k) {
  for (size_t i = 0; i < KBOX_SECCOMP_KEY_LEN; i++)
    if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f'))) return false;
  return true;
}

bool kbox_profile_cache_load(const char *dir, const char *key, struct kbox_profile_limits *lim,
                             char seccomp_key[KBOX_SECCOMP_KEY_LEN + 1]) {
  struct stat st;
  struct profile_record r;
  cleanup_close int fd = open_entry(dir, key, ".prof", &st);
  if (fd < 0 || st.st_size != (off_t)sizeof(r) ||
      pread(fd, &r, sizeof(r), 0) != (ssize_t)sizeof(r))
    return false;
  if (memcmp(r.magic, profile_magic, sizeof(profile_magic)) != 0 || r.zero != 0 || (r.set >> 6) != 0 ||
      !is_hex_key(r.seccomp_key))
    return false;
  *lim = (struct kbox_profile_limits){
      .memory_set = r.set & 1, .swap_set = r.set & 2, .disk_set = r.set & 4, .pids_set = r.set & 8,
      .cpus_set = r.set & 16, .nofile_set = r.set & 32, .memory_bytes = r.memory, .swap_bytes = r.swap,
      .disk_bytes = r.disk, .pids = r.pids, .nofile = r.nofile, .cpus = r.cpus};
  memcpy(seccomp_key, r.seccomp_key, KBOX_SECCOMP_KEY_LEN);
  seccomp_key[KBOX_SECCOMP_KEY_LEN] = '\0';
  return true;
}

void kbox_profile_cache_store(const char *dir, const char *key, const struct kbox_profile_limits *lim,
                              const char *seccomp_key) {
  struct profile_record r;
  memset(&r, 0, sizeof(r));
  memcpy(r.magic, profile_magic, sizeof(profile_magic));
  r.set = (lim->memory_set ? 1u : 0) | (lim->swap_set ? 2u : 0) | (lim->disk_set ? 4u : 0) |
          (lim->pids_set ? 8u : 0) | (lim->cpus_set ? 16u : 0) | (lim->nofile_set ? 32u : 0);
  r.memory = lim->memory_bytes;
  r.swap = lim->swap_bytes;
  r.disk = lim->disk_bytes;
  r.pids = lim->pids;
  r.nofile = lim->nofile;
  r.cpus = lim->cpus;
  memcpy(r.seccomp_key, seccomp_key, KBOX_SECCOMP_KEY_LEN);
  store_file(dir, key, "prof", "ptmp", &(struct iovec){&r, sizeof(r)}, 1);
}
