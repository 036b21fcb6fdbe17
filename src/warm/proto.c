#include "warm/proto.h"
#include "util/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "security/security.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/trace.h"

/* A growing buffer of NUL-terminated "key=value" fields. */
struct fields {
  char *buf;
  size_t len, cap;
};

static void add(struct fields *f, const char *key, const char *value) {
  size_t need = strlen(key) + strlen(value) + 2;
  if (f->len + need > f->cap) {
    f->cap = (f->len + need) * 2;
    f->buf = xrealloc(f->buf, f->cap);
  }
  f->len += (size_t)sprintf(f->buf + f->len, "%s=%s", key, value) + 1;
}

static void add_u(struct fields *f, const char *key, unsigned long long v) {
  char s[32];
  snprintf(s, sizeof(s), "%llu", v);
  add(f, key, s);
}

/* The request; with_trace adds --trace-setup's origin (not part of the pool key: tracing a claim
   must not change which kernel it gets). */
static int encode(const struct kbox_spec *spec, bool with_trace, char **out, size_t *len, kbox_error_t *err) {
  struct fields f = {0};
  add(&f, "id", spec->id);
  add(&f, "hostname", spec->sandbox.hostname);
  add_u(&f, "disk", spec->limits.disk_bytes);
  add_u(&f, "uid", spec->sandbox.uid);
  add_u(&f, "gid", spec->sandbox.gid);
  add_u(&f, "nofile", spec->limits.nofile);
  add_u(&f, "layers", spec->sandbox.rootfs.n);
  add_u(&f, "unconfined", spec->sec.seccomp_unconfined);
  add_u(&f, "rootless", spec->rootless);
  add_u(&f, "verbosity", (unsigned)spec->verbosity);
  if (with_trace) add_u(&f, "trace", (unsigned long long)kbox_trace_origin_ns());
  if (spec->sandbox.workdir != NULL) add(&f, "workdir", spec->sandbox.workdir);
  for (size_t i = 0; i < spec->sandbox.n_binds; i++) add(&f, spec->sandbox.binds[i].ro ? "bind_ro" : "bind_rw", spec->sandbox.binds[i].dst);
  for (size_t i = 0; i < spec->sandbox.env.n; i++) add(&f, "env", spec->sandbox.env.v[i]);
  struct kbox_warm_hdr h = {.magic = KBOX_WARM_MAGIC, .text_len = (uint32_t)f.len};
  const struct kbox_seccomp_compiled *c = spec->sec.loaded != NULL && !spec->sec.seccomp_unconfined ? &spec->sec.loaded->filter : NULL;
  size_t progs = 0;
  for (size_t i = 0; c != NULL && i < c->n && i < 2; i++) {
    h.prog_len[i] = c->progs[i].len;
    progs += c->progs[i].len * sizeof(struct sock_filter);
  }
  h.n_progs = c != NULL ? (uint32_t)c->n : 0;
  size_t total = sizeof(h) + f.len + progs;
  if (total > KBOX_WARM_MAX_REQ) {
    free(f.buf);
    return kbox_error_make(err, 0, "warm start: the request (%zu bytes) is too large", total);
  }
  char *p = xmalloc(total);
  memcpy(p, &h, sizeof(h));
  memcpy(p + sizeof(h), f.buf, f.len);
  size_t at = sizeof(h) + f.len;
  for (size_t i = 0; i < h.n_progs; i++) {
    memcpy(p + at, c->progs[i].filter, h.prog_len[i] * sizeof(struct sock_filter));
    at += h.prog_len[i] * sizeof(struct sock_filter);
  }
  free(f.buf);
  *out = p;
  *len = total;
  return 0;
}

int kbox_warm_encode(const struct kbox_spec *spec, char **out, size_t *len, kbox_error_t *err) {
  return encode(spec, kbox_trace_enabled(), out, len, err);
}

int kbox_warm_encode_untraced(const struct kbox_spec *spec, char **out, size_t *len, kbox_error_t *err) {
  return encode(spec, false, out, len, err);
}

/* Apply one decoded field to spec. */
static int decode_field(struct kbox_spec *spec, const char *kv, kbox_error_t *err) {
  const char *eq = strchr(kv, '=');
  if (eq == NULL) return kbox_error_make(err, 0, "warm request: bad field");
  size_t kl = (size_t)(eq - kv);
  const char *v = eq + 1;
#define IS(name) (kl == strlen(name) && strncmp(kv, name, kl) == 0)
  if (IS("id")) spec->id = xstrdup(v);
  else if (IS("hostname")) spec->sandbox.hostname = xstrdup(v);
  else if (IS("workdir")) spec->sandbox.workdir = xstrdup(v);
  else if (IS("disk")) spec->limits.disk_bytes = strtoull(v, NULL, 10);
  else if (IS("uid")) spec->sandbox.uid = (uid_t)strtoul(v, NULL, 10);
  else if (IS("gid")) spec->sandbox.gid = (gid_t)strtoul(v, NULL, 10);
  else if (IS("nofile")) spec->limits.nofile = strtoull(v, NULL, 10);
  else if (IS("unconfined")) spec->sec.seccomp_unconfined = strcmp(v, "1") == 0;
  else if (IS("rootless")) spec->rootless = strcmp(v, "1") == 0;
  else if (IS("verbosity")) spec->verbosity = (int)strtol(v, NULL, 10);
  else if (IS("trace")) {
    kbox_trace_enable(); /* --trace-setup: the fork's steps against kbox's origin */
    kbox_trace_set_origin_ns(strtoll(v, NULL, 10));
  }
  else if (IS("layers")) {
    unsigned long n = strtoul(v, NULL, 10);
    for (unsigned long i = 0; i < n; i++) kbox_strv_add(&spec->sandbox.rootfs, "(warm)");
  } else if (IS("bind_ro") || IS("bind_rw")) kbox_spec_add_bind(spec, "(warm)", v, IS("bind_ro"));
  else if (IS("env")) kbox_strv_add(&spec->sandbox.env, v);
  else return kbox_error_make(err, 0, "warm request: unknown field %.*s (kbox and the zygote differ)", (int)kl, kv);
#undef IS
  return 0;
}

int kbox_warm_decode(const char *buf, size_t len, struct kbox_spec *spec, struct kbox_seccomp_compiled *progs,
                     kbox_error_t *err) {
  struct kbox_warm_hdr h;
  if (len < sizeof(h)) return kbox_error_make(err, 0, "warm request: truncated");
  memcpy(&h, buf, sizeof(h));
  if (h.magic != KBOX_WARM_MAGIC || h.n_progs > 2 || h.text_len > len - sizeof(h))
    return kbox_error_make(err, 0, "warm request: bad header (kbox and the zygote differ)");
  const char *text = buf + sizeof(h), *end = text + h.text_len;
  for (const char *p = text; p < end; p += strlen(p) + 1) {
    if (memchr(p, '\0', (size_t)(end - p)) == NULL) return kbox_error_make(err, 0, "warm request: unterminated field");
    if (decode_field(spec, p, err) < 0) return -1;
  }
  size_t at = sizeof(h) + h.text_len;
  memset(progs, 0, sizeof(*progs));
  for (uint32_t i = 0; i < h.n_progs; i++) {
    size_t bytes = (size_t)h.prog_len[i] * sizeof(struct sock_filter);
    if (bytes > len - at || h.prog_len[i] == 0 || h.prog_len[i] > 65535)
      return kbox_error_make(err, 0, "warm request: truncated seccomp program");
    progs->progs[i].len = (unsigned short)h.prog_len[i];
    progs->progs[i].filter = xmalloc(bytes);
    memcpy(progs->progs[i].filter, buf + at, bytes);
    at += bytes;
    progs->n = i + 1;
  }
  if (spec->id == NULL || spec->sandbox.hostname == NULL) return kbox_error_make(err, 0, "warm request: no id or hostname");
  return 0;
}

int kbox_warm_send(int sock, const void *buf, size_t len, const int *fds, int n_fds, kbox_error_t *err) {
  if (n_fds > KBOX_WARM_MAX_FDS) return kbox_error_make(err, 0, "warm start: too many file descriptors (%d)", n_fds);
  union {
    char b[CMSG_SPACE(sizeof(int) * KBOX_WARM_MAX_FDS)];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof(u));
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n_fds > 0) {
    mh.msg_control = u.b;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n_fds);
  }
  ssize_t r;
  do r = sendmsg(sock, &mh, MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
  if (r < 0) return kbox_error_make(err, errno, "warm start: sending to the zygote");
  return 0;
}

long kbox_warm_recv(int sock, void *buf, size_t cap, int *fds, int *n_fds, kbox_error_t *err) {
  union {
    char b[CMSG_SPACE(sizeof(int) * KBOX_WARM_MAX_FDS)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
  ssize_t r;
  do r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC); while (r < 0 && errno == EINTR);
  if (r < 0) return kbox_error_make(err, errno, "warm start: receiving");
  *n_fds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + sizeof(int) * (size_t)i, sizeof(int));
      if (*n_fds < KBOX_WARM_MAX_FDS) fds[(*n_fds)++] = fd;
      else close(fd);
    }
  }
  if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
    for (int i = 0; i < *n_fds; i++) close(fds[i]);
    *n_fds = 0;
    return kbox_error_make(err, 0, "warm start: a truncated message");
  }
  return (long)r;
}

void kbox_warm_pack_env(const struct kbox_strv *env, char *buf, size_t cap) {
  size_t at = 0;
  for (size_t i = 0; i < env->n; i++) {
    size_t n = strlen(env->v[i]) + 1;
    if (at + n + 1 > cap) break;
    memcpy(buf + at, env->v[i], n);
    at += n;
  }
  if (cap > 0) buf[at] = '\0';
}

pid_t kbox_warm_pidfd_pid(int pidfd) {
  char path[64], *text = NULL;
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
  kbox_error_t ignored = NULL;
  if (kbox_read_file(path, 4096, &text, NULL, &ignored) < 0) {
    kbox_error_free(&ignored);
    return -1;
  }
  const char *p = strstr(text, "\nPid:");
  pid_t pid = p != NULL ? (pid_t)strtol(p + 5, NULL, 10) : -1;
  free(text);
  return pid;
}

int kbox_warm_listen(const char *path, int backlog, kbox_error_t *err) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (snprintf(a.sun_path, sizeof(a.sun_path), "%s", path) >= (int)sizeof(a.sun_path))
    return kbox_error_make(err, 0, "%s is too long for a socket path", path);
  cleanup_close int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return kbox_error_make(err, errno, "socket");
  unlink(path);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, backlog) < 0)
    return kbox_error_make(err, errno, "listening at %s", path);
  return steal_fd(fd);
}
