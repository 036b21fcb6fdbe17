#include "kernel/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "kernel/runlock.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/parse.h"

/* Write name in dir atomically (temp file + rename) with mode 0600. No fsync: readers need only
   the rename's atomicity, and the state of a running kernel means nothing after a crash of the
   host (on a disk-backed /run the three syncs cost 2-15 ms of every start). */
static int write_file(const char *dir, const char *name, const char *text, kbox_error_t *err) {
  char tmp[4200], path[4200];
  snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return kbox_error_make(err, errno, "writing %s", tmp);
  size_t len = strlen(text);
  if (write(fd, text, len) != (ssize_t)len) return kbox_error_make(err, errno, "writing %s", tmp);
  if (rename(tmp, path) < 0) return kbox_error_make(err, errno, "renaming %s", tmp);
  return 0;
}

int kbox_state_base(char *out, size_t n, bool create, kbox_error_t *err) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  struct stat st;
  if (xdg != NULL && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) && access(xdg, W_OK) == 0)
    snprintf(out, n, "%s/kbox", xdg);
  else if (geteuid() == 0)
    snprintf(out, n, "/run/kbox");
  else
    snprintf(out, n, "/tmp/kbox-%u", (unsigned)geteuid());
  if (create && mkdir(out, 0700) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating %s", out);
  if (lstat(out, &st) < 0) {
    if (errno == ENOENT && !create) return 0;
    return kbox_error_make(err, errno, "%s", out);
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0)
    return kbox_error_make(err, 0, "state directory %s must be a directory owned by uid %u with mode 0700 (it is not: "
                           "refusing to trust it)", out, (unsigned)geteuid());
  return 0;
}

#define VERDICT_KEEP_S 60 /* the exec --id that saw its kernel die reads the verdict at once */

/* Remove verdicts nobody came for (a kernel with an id that exited while no exec --id ran). */
static void sweep_verdicts(const char *base) {
  DIR *d = opendir(base);
  if (d == NULL) return;
  time_t now = time(NULL);
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t n = strlen(e->d_name);
    struct stat st;
    if (e->d_name[0] != '.' || n < 14 || strcmp(e->d_name + n - 13, ".verdict.json") != 0) continue;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && now - st.st_mtime > VERDICT_KEEP_S)
      unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
}

void kbox_state_sweep(void) {
  char base[3800];
  kbox_error_t err = NULL;
  struct stat st;
  if (kbox_state_base(base, sizeof(base), false, &err) < 0) {
    kbox_error_free(&err);
    return;
  }
  if (stat(base, &st) < 0) return;
  kbox_runlock_sweep(base);
  sweep_verdicts(base);
}

/* Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), 0 if gone or a zombie. */
static unsigned long long proc_start(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t r = read(fd, buf, sizeof(buf) - 1);
  if (r <= 0) return 0;
  buf[r] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may contain spaces and parentheses */
  if (p == NULL) return 0;
  unsigned long long v = 0;
  /* after ")": state is field 3 (a zombie counts as gone); skip to field 22 */
  int field = 2;
  for (char *tok = strtok(p + 1, " "); tok != NULL; tok = strtok(NULL, " "))
    if (++field == 3 && (tok[0] == 'Z' || tok[0] == 'X')) {
      return 0;
    } else if (field == 22) {
      v = strtoull(tok, NULL, 10);
      break;
    }
  return v;
}

/* State letter of a process (field 3 of /proc/PID/stat: R, S, T...), '?' if unknown. */
static char proc_state(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
  if (r <= 0) return '?';
  buf[r] = '\0';
  const char *p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' && p[2] != '\0' ? p[2] : '?';
}

/* Read a small file relative to dir into buf; -1 if missing. */
static int read_small(const char *dir, const char *name, char *buf, size_t n) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  ssize_t r = read(fd, buf, n - 1);
  if (r < 0) return -1;
  buf[r] = '\0';
  return 0;
}

/* Fill st from its directory; liveness from the pid file (pid + start time), else the run lock. */
static void load(struct kbox_state *st) {
  char buf[256], path[4200];
  st->pid = st->sandbox_pid = 0;
  st->alive = st->busy = st->stopped = false;
  st->created = 0;
  unsigned long long start = 0, sandbox_start = 0;
  int pid = 0, spid = 0;
  long long created = 0;
  if (read_small(st->dir, "pid", buf, sizeof(buf)) == 0 &&
      sscanf(buf, "%d %llu %d %llu %lld", &pid, &start, &spid, &sandbox_start, &created) == 5 && pid > 0) {
    st->created = created;
    st->alive = proc_start(pid) == start;
    if (st->alive) st->pid = pid;
    char state = st->alive ? proc_state(pid) : '?';
    st->stopped = state == 'T' || state == 't'; /* SIGSTOP, a debugger: it serves no client */
    if (st->alive && spid > 0 && proc_start(spid) == sandbox_start) st->sandbox_pid = spid;
  } else {
    st->alive = kbox_runlock_held(st->dir); /* still starting, or a foreground run of an older kbox */
  }
  snprintf(path, sizeof(path), "%s/connection.json", st->dir);
  st->have_conn = access(path, F_OK) == 0;
  snprintf(path, sizeof(path), "%s/exec.lock", st->dir);
  cleanup_close int lk = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (lk >= 0 && flock(lk, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) st->busy = true;
}

int kbox_state_read(const char *id, struct kbox_state *st, kbox_error_t *err) {
  memset(st, 0, sizeof(*st));
  if (kbox_validate_id("kernel id", id, err) < 0) return -1;
  char base[3800];
  if (kbox_state_base(base, sizeof(base), false, err) < 0) return -1;
  snprintf(st->id, sizeof(st->id), "%s", id);
  snprintf(st->dir, sizeof(st->dir), "%s/%s", base, id);
  struct stat sb;
  if (lstat(st->dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
    return kbox_error_make(err, 0, "no kernel with id '%s' (state directory %s does not exist; 'kbox ps' lists the "
                           "kernels, 'kbox run --id %s --detach' starts one)", id, st->dir, id);
  load(st);
  return 0;
}

static int by_id(const void *a, const void *b) {
  return strcmp(((const struct kbox_state *)a)->id, ((const struct kbox_state *)b)->id);
}

int kbox_state_list(struct kbox_state **out, size_t *n, kbox_error_t *err) {
  *out = NULL;
  *n = 0;
  char base[3800];
  if (kbox_state_base(base, sizeof(base), false, err) < 0) return -1;
  DIR *d = opendir(base);
  if (d == NULL) return errno == ENOENT ? 0 : kbox_error_make(err, errno, "reading %s", base);
  size_t cap = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    kbox_error_t ignored = NULL;
    if (e->d_name[0] == '.' || kbox_validate_id("", e->d_name, &ignored) < 0) {
      kbox_error_free(&ignored);
      continue;
    }
    if (*n == cap) {
      cap = cap ? cap * 2 : 8;
      *out = xrealloc(*out, cap * sizeof(**out));
    }
    struct kbox_state *st = &(*out)[*n];
    memset(st, 0, sizeof(*st));
    snprintf(st->id, sizeof(st->id), "%.64s", e->d_name);
    snprintf(st->dir, sizeof(st->dir), "%s/%s", base, e->d_name);
    struct stat sb;
    if (lstat(st->dir, &sb) < 0 || !S_ISDIR(sb.st_mode) || !kbox_runlock_is_run_dir(st->dir)) continue;
    load(st);
    (*n)++;
  }
  closedir(d);
  if (*n > 1) qsort(*out, *n, sizeof(**out), by_id);
  return 0;
}

const char *kbox_state_status(const struct kbox_state *st) {
  if (!st->alive) return "dead";
  if (st->stopped) return "stopped";
  if (strncmp(st->id, KBOX_POOL_ID_PREFIX, strlen(KBOX_POOL_ID_PREFIX)) == 0) return "pooled"; /* not claimed yet */
  if (!st->have_conn) return "starting";
  return st->busy ? "busy" : "idle";
}

json_t *kbox_state_json(const struct kbox_state *st) {
  json_t *j = json_object();
  json_object_set_new(j, "id", json_string(st->id));
  json_object_set_new(j, "status", json_string(kbox_state_status(st)));
  json_object_set_new(j, "pid", st->pid ? json_integer(st->pid) : json_null());
  json_object_set_new(j, "sandbox_pid", st->sandbox_pid ? json_integer(st->sandbox_pid) : json_null());
  long long now = (long long)time(NULL);
  json_object_set_new(j, "created", st->created ? json_integer(st->created) : json_null());
  json_object_set_new(j, "age_seconds", st->created ? json_integer(now - st->created) : json_null());
  long long mem = st->sandbox_pid ? kbox_cgroup_pid_memory(st->sandbox_pid) : -1;
  json_object_set_new(j, "memory_bytes", mem >= 0 ? json_integer(mem) : json_null());
  char path[4200];
  snprintf(path, sizeof(path), "%s/options.json", st->dir);
  json_t *opts = json_load_file(path, 0, NULL);
  json_t *limits = opts ? json_object_get(opts, "limits") : NULL;
  json_object_set(j, "limits", limits ? limits : json_null());
  json_object_set(j, "options", opts ? opts : json_null());
  json_decref(opts);
  snprintf(path, sizeof(path), "%s/connection.json", st->dir);
  json_object_set_new(j, "connection_file", st->have_conn ? json_string(path) : json_null());
  json_object_set_new(j, "state_dir", json_string(st->dir));
  char log[4200];
  kbox_error_t ignored = NULL;
  if (kbox_state_log_path(st->id, log, sizeof(log), &ignored) == 0 && access(log, F_OK) == 0)
    json_object_set_new(j, "log", json_string(log));
  kbox_error_free(&ignored);
  return j;
}

int kbox_state_conn(const struct kbox_state *st, struct kbox_conn *c, kbox_error_t *err) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/connection.json", st->dir);
  if (!st->have_conn)
    return kbox_error_make(err, 0, "kernel '%s' has no connection file yet (status %s)", st->id, kbox_state_status(st));
  return kbox_conn_read(path, c, err);
}

/* Path of ID's verdict file: BASE/.ID.verdict.json (outside the run dir, which is removed at exit). */
static int verdict_path(const char *id, char *out, size_t n, kbox_error_t *err) {
  char base[3800];
  if (kbox_state_base(base, sizeof(base), false, err) < 0) return -1;
  snprintf(out, n, "%s/.%s.verdict.json", base, id);
  return 0;
}

void kbox_state_write_verdict(const char *id, json_t *verdict) {
  char path[4200], base[3800];
  kbox_error_t err = NULL;
  if (verdict_path(id, path, sizeof(path), &err) < 0 || kbox_state_base(base, sizeof(base), false, &err) < 0) {
    kbox_error_free(&err);
    return;
  }
  cleanup_free char *text = json_dumps(verdict, JSON_COMPACT | JSON_SORT_KEYS);
  char name[200];
  snprintf(name, sizeof(name), ".%s.verdict.json", id);
  if (text == NULL || write_file(base, name, text, &err) < 0) {
    if (err != NULL) kbox_log(KBOX_LOG_WARN, "%s (kbox exec --id will not know why the kernel ended)", err->msg);
    kbox_error_free(&err);
  }
}

json_t *kbox_state_take_verdict(const char *id, pid_t supervisor) {
  char path[4200];
  kbox_error_t err = NULL;
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (verdict_path(id, path, sizeof(path), &err) < 0 || kbox_read_file(path, 1 << 20, &text, &len, &err) < 0) {
    kbox_error_free(&err);
    return NULL;
  }
  json_t *v = json_loadb(text, len, 0, NULL);
  json_t *pid = json_object_get(v, "supervisor_pid");
  if (v == NULL || !json_is_integer(pid) || json_integer_value(pid) != supervisor) {
    json_decref(v); /* another kernel's (an earlier one with this id): not the answer */
    return NULL;
  }
  unlink(path);
  return v;
}

void kbox_state_drop_verdict(const char *id) {
  char path[4200];
  kbox_error_t err = NULL;
  if (verdict_path(id, path, sizeof(path), &err) == 0) unlink(path);
  kbox_error_free(&err);
}

void kbox_state_remove(const struct kbox_state *st) {
  /* Only with its run lock: a kbox that took this id again meanwhile keeps its directory. */
  int lock = kbox_runlock_take(st->dir, true);
  if (lock >= 0) kbox_runlock_remove(st->dir, lock);
  char log[4200];
  kbox_error_t ignored = NULL;
  if (kbox_state_log_path(st->id, log, sizeof(log), &ignored) == 0) unlink(log);
  kbox_error_free(&ignored);
  kbox_state_drop_verdict(st->id);
}

int kbox_state_lock_exec(const struct kbox_state *st, int wait_ms, kbox_error_t *err) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/exec.lock", st->dir);
  cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return kbox_error_make(err, errno, "opening %s", path);
  for (int waited = 0;; waited += 50) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return steal_fd(fd);
    if (errno != EWOULDBLOCK) return kbox_error_make(err, errno, "locking %s", path);
    if (waited >= wait_ms)
      return kbox_error_make(err, 0, "kernel '%s' is busy: another 'kbox exec --id %s' has been running for more than "
                             "%d s (wait for it, or 'kbox interrupt %s')", st->id, st->id, wait_ms / 1000, st->id);
    usleep(50 * 1000);
  }
}

char *kbox_state_conn_line(const struct kbox_conn *host, const char *id) {
  json_t *j = kbox_conn_to_json(host, id);
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(j);
  return s;
}

/* options.json: what the kernel was started with (limits first, for ps). */
static char *options_text(const struct kbox_spec *s) {
  json_t *rootfs = json_array();
  for (size_t i = 0; i < s->sandbox.rootfs.n; i++) json_array_append_new(rootfs, json_string(s->sandbox.rootfs.v[i]));
  json_t *o = json_pack("{s:s, s:{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I}, s:o, s:s?, s:s?, s:s?, s:b}",
                        "id", s->id, "limits", "memory", (json_int_t)s->limits.memory_bytes, "swap", (json_int_t)s->limits.swap_bytes,
                        "pids", (json_int_t)s->limits.pids, "cpus", s->limits.cpus, "disk", (json_int_t)s->limits.disk_bytes,
                        "timeout_ms", (json_int_t)s->limits.timeout_ms, "exec_timeout_ms", (json_int_t)s->kernel.exec_timeout_ms,
                        "idle_timeout_ms", (json_int_t)s->kernel.idle_timeout_ms, "rootfs", rootfs, "workdir", s->sandbox.workdir,
                        "profile", s->sec.profile, "kernel_cmd", s->kernel.cmd, "detached", s->kernel.detach);
  char *t = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
  json_decref(o);
  return t;
}

int kbox_state_record(const char *rundir, const struct kbox_spec *spec, const struct kbox_conn *host,
                      pid_t sandbox_pid, kbox_error_t *err) {
  cleanup_free char *conn = kbox_state_conn_line(host, spec->id);
  cleanup_free char *opts = options_text(spec);
  char pid[160];
  snprintf(pid, sizeof(pid), "%d %llu %d %llu %lld\n", (int)getpid(), proc_start(getpid()), (int)sandbox_pid,
           proc_start(sandbox_pid), (long long)time(NULL));
  char conn_nl[8192];
  snprintf(conn_nl, sizeof(conn_nl), "%s\n", conn ? conn : "{}");
  if (write_file(rundir, "options.json", opts ? opts : "{}", err) < 0 || write_file(rundir, "pid", pid, err) < 0 ||
      write_file(rundir, "connection.json", conn_nl, err) < 0)
    return kbox_error_prefix(err, "recording kernel state");
  return 0;
}

int kbox_state_log_path(const char *id, char *out, size_t n, kbox_error_t *err) {
  char base[3800];
  if (kbox_state_base(base, sizeof(base), false, err) < 0) return -1;
  snprintf(out, n, "%s/.%s.log", base, id);
  return 0;
}
