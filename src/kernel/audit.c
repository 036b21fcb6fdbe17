#include "kernel/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernel/jscan.h"
#include "security/sha256.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/log.h"

#define MAX_PENDING 16 /* execute_requests queued in the kernel that the audit follows */

struct pending {
  char msg_id[128];
  long long t0;
  unsigned long long out_bytes;
  bool interrupted, timed_out;
};

struct kbox_audit {
  int fd;
  char *path;
  char *id;
  atomic_ulong records, dropped;
  struct pending pend[MAX_PENDING];
  size_t n_pend;
};

/* Is s (after realpath) path or below it? */
static bool below(const char *s, const char *dir) {
  size_t n = strlen(dir);
  if (n == 1 && dir[0] == '/') return false; /* a bind of / is a read-only host root: see docs */
  return strncmp(s, dir, n) == 0 && (s[n] == '/' || s[n] == '\0');
}

int kbox_audit_check_hidden(const struct kbox_spec *spec, kbox_error_t *err) {
  if (spec->audit_path == NULL) return 0;
  cleanup_free char *dir = xstrdup(spec->audit_path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) dir[1] = '\0';
  else if (slash != NULL) *slash = '\0';
  else snprintf(dir, 2, ".");
  cleanup_free char *real = realpath(dir, NULL);
  if (real == NULL) return kbox_error_make(err, errno, "--audit: the directory of %s", spec->audit_path);
  const char *where = NULL;
  if (spec->sandbox.workdir != NULL && below(real, spec->sandbox.workdir)) where = spec->sandbox.workdir;
  for (size_t i = 0; where == NULL && i < spec->sandbox.n_binds; i++)
    if (below(real, spec->sandbox.binds[i].src)) where = spec->sandbox.binds[i].src;
  if (where != NULL)
    return kbox_error_make(err, 0, "--audit: %s is inside %s, which the sandbox shares; the kernel could read or change "
                                   "its own audit log. Put the log outside every --workdir/--bind directory",
                           spec->audit_path, where);
  return 0;
}

/* The path of host file `real` inside the sandbox when rootfs layer `layer` shows it, else NULL. */
static const char *inside_layer(const char *real, const char *layer) {
  if (strcmp(layer, "/") == 0) return real;
  size_t n = strlen(layer);
  return strncmp(real, layer, n) == 0 && real[n] == '/' ? real + n : NULL;
}

void kbox_audit_mask(struct kbox_spec *spec) {
  if (spec->audit_path == NULL) return;
  cleanup_free char *real = realpath(spec->audit_path, NULL);
  if (real == NULL) return;
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++) {
    cleanup_free char *layer = realpath(spec->sandbox.rootfs.v[i], NULL);
    const char *in = layer ? inside_layer(real, layer) : NULL;
    /* The sandbox mounts its own /tmp, /dev, /proc and /sys: the host's files there never show (and
       a mask would only reveal the log's name by creating its mount point). */
    static const char *const own[] = {"/tmp/", "/dev/", "/proc/", "/sys/"};
    for (size_t o = 0; in != NULL && o < sizeof(own) / sizeof(own[0]); o++)
      if (strncmp(in, own[o], strlen(own[o])) == 0) in = NULL;
    bool have = false;
    for (size_t b = 0; in != NULL && b < spec->sandbox.n_binds; b++) have = have || strcmp(spec->sandbox.binds[b].dst, in) == 0;
    if (in != NULL && !have) kbox_spec_add_bind(spec, "/dev/null", in, true); /* nodev: cannot even be opened */
  }
}

int kbox_audit_open(struct kbox_audit **out, const char *path, const char *id, kbox_error_t *err) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) return kbox_error_make(err, errno, "--audit: cannot open %s for appending", path);
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return kbox_error_make(err, 0, "--audit: %s is not a regular file", path);
  }
  struct kbox_audit *a = xcalloc(1, sizeof(*a));
  a->fd = fd;
  a->path = xstrdup(path);
  a->id = xstrdup(id);
  *out = a;
  return 0;
}

/* UTC wall-clock time with milliseconds: 2026-12-01T16:05:25.123Z */
static void timestamp(char *out, size_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

void kbox_audit_record(struct kbox_audit *a, const char *event, json_t *fields) {
  if (a == NULL) {
    json_decref(fields);
    return;
  }
  char ts[40];
  timestamp(ts, sizeof(ts));
  json_t *r = json_pack("{s:s, s:s, s:s}", "time", ts, "id", a->id, "event", event);
  if (fields != NULL) json_object_update_missing(r, fields);
  json_decref(fields);
  char *text = json_dumps(r, JSON_COMPACT);
  json_decref(r);
  size_t len = text ? strlen(text) : 0;
  bool ok = false;
  if (text != NULL) {
    text[len] = '\n'; /* json_dumps' NUL becomes the line end: one write(2) per record */
    ssize_t w;
    do w = write(a->fd, text, len + 1); while (w < 0 && errno == EINTR);
    ok = w == (ssize_t)(len + 1);
    if (!ok && w >= 0) {
      errno = ENOSPC; /* a short write: the disk filled up */
      if (write(a->fd, "\n", 1) < 0) { /* end the fragment so the next record starts a line, if we can */ }
      errno = ENOSPC;
    }
  }
  int e = errno;
  free(text);
  if (ok) {
    atomic_fetch_add(&a->records, 1);
    return;
  }
  unsigned long d = atomic_fetch_add(&a->dropped, 1) + 1;
  if (d <= 5 || d % 100 == 0)
    kbox_warn("--audit %s: a %s record could not be written (%s); %lu dropped so far", a->path, event, strerror(e), d);
}

/* A JSON string of at most cap bytes of s (cut at a UTF-8 character boundary). */
static json_t *capped(const char *s, size_t n, size_t cap, bool *cut) {
  *cut = n > cap;
  if (*cut) {
    n = cap;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
  }
  json_t *j = json_stringn(s, n);
  return j ? j : json_string("(not UTF-8)");
}

static void hex(const unsigned char *p, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
  out[2 * n] = '\0';
}

void kbox_audit_start(struct kbox_audit *a, const struct kbox_spec *s, const char *how, int pid) {
  if (a == NULL) return;
  json_t *layers = json_array();
  for (size_t i = 0; i < s->sandbox.rootfs.n; i++) json_array_append_new(layers, json_string(s->sandbox.rootfs.v[i]));
  json_t *allow = json_array();
  for (size_t i = 0; i < s->sandbox.net_allow.n; i++) json_array_append_new(allow, json_string(s->sandbox.net_allow.v[i]));
  json_t *limits = json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:f, s:f, s:f}", "memory_bytes", (json_int_t)s->limits.memory_bytes,
                             "swap_bytes", (json_int_t)s->limits.swap_bytes, "pids", (json_int_t)s->limits.pids, "cpus", s->limits.cpus,
                             "disk_bytes", (json_int_t)s->limits.disk_bytes, "nofile", (json_int_t)s->limits.nofile, "timeout_seconds",
                             (double)s->limits.timeout_ms / 1000.0, "exec_timeout_seconds", (double)s->kernel.exec_timeout_ms / 1000.0,
                             "idle_timeout_seconds", (double)s->kernel.idle_timeout_ms / 1000.0);
  json_t *argv = json_array();
  for (size_t i = 0; i < s->sandbox.argv.n; i++) json_array_append_new(argv, json_string(s->sandbox.argv.v[i]));
  json_t *f = json_pack("{s:s, s:o, s:s, s:b, s:o, s:{s:s, s:o, s:I}, s:o, s:s?, s:i, s:b}", "how", how, "image", layers,
                        "profile", s->sec.profile ? s->sec.profile : "default", "seccomp_unconfined", s->sec.seccomp_unconfined,
                        "limits", limits, "net", "mode", s->sandbox.net == KBOX_NET_ALLOW ? "allow" : "none", "allow", allow,
                        "max_bytes", (json_int_t)s->sandbox.net_max_bytes, "argv", argv, "workdir", s->sandbox.workdir, "pid", pid,
                        "rootless", s->rootless);
  kbox_audit_record(a, "kernel_start", f);
}

/* JSON object part i of a message, parsed (NULL when it is not one). */
static json_t *part(const struct kbox_frames *f, size_t i) {
  if (i >= f->n) return NULL;
  return json_loadb(kbox_frame_data(f, i), kbox_frame_size(f, i), 0, NULL);
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

static struct pending *find(struct kbox_audit *a, const char *msg_id, size_t n) {
  for (size_t i = 0; i < a->n_pend; i++)
    if (strlen(a->pend[i].msg_id) == n && memcmp(a->pend[i].msg_id, msg_id, n) == 0) return &a->pend[i];
  return NULL;
}

static void forget(struct kbox_audit *a, struct pending *p) {
  size_t i = (size_t)(p - a->pend);
  memmove(&a->pend[i], &a->pend[i + 1], (a->n_pend - i - 1) * sizeof(*p));
  a->n_pend--;
}

/* An execute_request from a client: record it (code capped, hash of all of it) and follow it. */
static void exec_request(struct kbox_audit *a, const struct kbox_frames *f, size_t delim, json_t *hdr, long long now) {
  json_t *content = part(f, delim + 5);
  const char *code = str(content, "code");
  size_t n = strlen(code);
  struct kbox_sha256 h;
  unsigned char dig[32];
  char dighex[65], ident[65] = "";
  kbox_sha256_init(&h);
  kbox_sha256_update(&h, code, n);
  kbox_sha256_final(&h, dig);
  hex(dig, 32, dighex);
  if (delim > 0) hex(kbox_frame_data(f, 0), kbox_frame_size(f, 0) > 32 ? 32 : kbox_frame_size(f, 0), ident);
  bool cut = false;
  json_t *code_j = capped(code, n, KBOX_AUDIT_CODE_CAP, &cut);
  kbox_audit_record(a, "execute_request",
                    json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:b, s:b}", "msg_id", str(hdr, "msg_id"),
                              "session", str(hdr, "session"), "username", str(hdr, "username"), "client_identity", ident,
                              "code", code_j, "code_sha256", dighex, "code_bytes", (json_int_t)n, "code_cap",
                              (json_int_t)KBOX_AUDIT_CODE_CAP, "code_truncated", cut, "silent",
                              json_is_true(json_object_get(content, "silent"))));
  json_decref(content);
  if (a->n_pend == MAX_PENDING) forget(a, &a->pend[0]);
  struct pending *p = &a->pend[a->n_pend++];
  memset(p, 0, sizeof(*p));
  snprintf(p->msg_id, sizeof(p->msg_id), "%s", str(hdr, "msg_id"));
  p->t0 = now;
}

void kbox_audit_on_client(struct kbox_audit *a, enum kbox_channel ch, const struct kbox_frames *f, size_t delim, long long now) {
  if (a == NULL || (ch != KBOX_CH_SHELL && ch != KBOX_CH_CONTROL)) return;
  const char *h = kbox_frame_data(f, delim + 2);
  size_t hn = kbox_frame_size(f, delim + 2);
  bool exec = ch == KBOX_CH_SHELL && memmem(h, hn, "\"execute_request\"", 17) != NULL;
  bool intr = ch == KBOX_CH_CONTROL && memmem(h, hn, "\"interrupt_request\"", 19) != NULL;
  if (!exec && !intr) return;
  json_t *hdr = part(f, delim + 2);
  const char *type = str(hdr, "msg_type");
  if (exec && strcmp(type, "execute_request") == 0) exec_request(a, f, delim, hdr, now);
  else if (intr && strcmp(type, "interrupt_request") == 0) kbox_audit_interrupted(a);
  json_decref(hdr);
}

void kbox_audit_on_kernel(struct kbox_audit *a, enum kbox_channel ch, const struct kbox_frames *f, size_t delim, long long now) {
  if (a == NULL || ch != KBOX_CH_SHELL || a->n_pend == 0) return;
  if (memmem(kbox_frame_data(f, delim + 2), kbox_frame_size(f, delim + 2), "\"execute_reply\"", 15) == NULL) return;
  json_t *parent = part(f, delim + 3), *content = part(f, delim + 5);
  const char *pid = str(parent, "msg_id");
  struct pending *p = find(a, pid, strlen(pid));
  if (p != NULL) {
    bool c1 = false, c2 = false;
    const char *ename = str(content, "ename"), *evalue = str(content, "evalue");
    json_t *fields = json_pack("{s:s, s:s, s:f, s:I, s:b, s:b}", "msg_id", p->msg_id, "status", str(content, "status"),
                               "duration_seconds", (double)(now - p->t0) / 1000.0, "output_bytes",
                               (json_int_t)p->out_bytes, "interrupted", p->interrupted, "timed_out", p->timed_out);
    if (*ename) json_object_set_new(fields, "ename", capped(ename, strlen(ename), KBOX_AUDIT_TEXT_CAP, &c1));
    if (*evalue || *ename) json_object_set_new(fields, "evalue", capped(evalue, strlen(evalue), KBOX_AUDIT_TEXT_CAP, &c2));
    json_t *ec = json_object_get(content, "execution_count");
    if (json_is_integer(ec)) json_object_set(fields, "execution_count", ec);
    kbox_audit_record(a, "execute_outcome", fields);
    forget(a, p);
  }
  json_decref(parent);
  json_decref(content);
}

void kbox_audit_on_iopub(struct kbox_audit *a, const struct kbox_frames *f, size_t delim) {
  if (a == NULL || a->n_pend == 0) return;
  static const char *const keys[] = {"msg_id"};
  struct kbox_jspan id = {0};
  if (!kbox_jscan_object(kbox_frame_data(f, delim + 3), kbox_frame_size(f, delim + 3), keys, 1, &id) || id.p == NULL) return;
  struct pending *p = find(a, id.p, id.n);
  if (p != NULL) p->out_bytes += f->bytes;
}

void kbox_audit_interrupted(struct kbox_audit *a) {
  if (a != NULL && a->n_pend > 0) a->pend[0].interrupted = true;
}

void kbox_audit_timed_out(struct kbox_audit *a) {
  if (a != NULL && a->n_pend > 0) a->pend[0].timed_out = true;
}

/* One "limit" record when the verdict says a limit ended or hurt the kernel. */
static void limit_events(struct kbox_audit *a, json_t *v) {
  static const struct { const char *key, *limit, *what; } map[] = {
      {"oom_killed", "memory", "the kernel ran out of memory (--memory) and was killed"},
      {"pids_limit_hit", "pids", "the kernel hit --pids (fork/thread creation refused)"},
      {"timed_out", "timeout", "the kernel ran past --timeout or --exec-timeout and was killed"},
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (json_is_true(json_object_get(v, map[i].key)))
      kbox_audit_record(a, "limit", json_pack("{s:s, s:s}", "limit", map[i].limit, "what", map[i].what));
}

void kbox_audit_end(struct kbox_audit *a, json_t *verdict) {
  if (a == NULL) return;
  for (size_t i = 0; i < a->n_pend; i++) {
    const struct pending *p = &a->pend[i];
    kbox_audit_record(a, "execute_outcome",
                      json_pack("{s:s, s:s, s:I, s:b, s:b}", "msg_id", p->msg_id, "status", "no_reply", "output_bytes",
                                (json_int_t)p->out_bytes, "interrupted", p->interrupted, "timed_out", p->timed_out));
  }
  a->n_pend = 0;
  if (verdict != NULL) limit_events(a, verdict);
  kbox_audit_record(a, "kernel_end", json_pack("{s:O?}", "verdict", verdict));
}

json_t *kbox_audit_report(const struct kbox_audit *a) {
  return json_pack("{s:s, s:I, s:I}", "path", a->path, "records", (json_int_t)atomic_load(&a->records), "dropped",
                   (json_int_t)atomic_load(&a->dropped));
}

void kbox_audit_close(struct kbox_audit *a) {
  if (a == NULL) return;
  close(a->fd);
  free(a->path);
  free(a->id);
  free(a);
}
