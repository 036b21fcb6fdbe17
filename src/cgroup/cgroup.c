/* The sandbox cgroup: pick a mechanism per limit, create the directories, attach, collect, remove. */
#include "cgroup/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/files.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/trace.h"

static const char *const ctl_names[KBOX_CTL_N] = {"memory", "pids", "cpu"};

const char *kbox_mech_name(enum kbox_mech m) {
  static const char *const names[] = {"none", "cgroup2", "cgroup1", "rlimit"};
  return names[m];
}

const char *kbox_lim_name(enum kbox_lim l) {
  static const char *const names[] = {"memory", "swap", "pids", "cpu"};
  return names[l];
}

/* The limits a controller carries. */
static void ctl_limits(enum kbox_ctl c, enum kbox_lim out[2], int *n) {
  *n = 0;
  if (c == KBOX_CTL_MEMORY) { out[(*n)++] = KBOX_LIM_MEMORY; out[(*n)++] = KBOX_LIM_SWAP; }
  if (c == KBOX_CTL_PIDS) out[(*n)++] = KBOX_LIM_PIDS;
  if (c == KBOX_CTL_CPU) out[(*n)++] = KBOX_LIM_CPU;
}

/* Remember why controller C's limits have no cgroup mechanism (first reason wins). */
static void why_not(struct kbox_cgroup *cg, enum kbox_ctl c, const char *reason) {
  enum kbox_lim l[2];
  int n;
  ctl_limits(c, l, &n);
  for (int i = 0; i < n; i++)
    if (cg->why_not[l[i]] == NULL && cg->mech[l[i]] == KBOX_MECH_NONE) cg->why_not[l[i]] = xstrdup(reason);
}

/* Same, for every controller in MASK, taking the reason from an error (which is freed). */
static void why_not_err(struct kbox_cgroup *cg, unsigned mask, kbox_error_t *e) {
  for (int c = 0; c < KBOX_CTL_N; c++)
    if (mask & (1u << c)) why_not(cg, (enum kbox_ctl)c, (*e)->msg);
  kbox_error_free(e);
}

/* PARENT/NAME, allocated. */
static char *join(const char *parent, const char *name) {
  char *out = xasprintf("%s/%s", parent, name);
  return out;
}

/* mkdir DIR for the sandbox, known to the reaper first; the error names the directory and the fix. */
static int make_dir(struct kbox_cgroup *cg, const char *dir, kbox_error_t *err) {
  if (kbox_cgroup_reaper_watch(cg, dir, err) < 0) return -1;
  if (mkdir(dir, 0755) == 0 || (errno == EEXIST && cg->adopt_existing)) return 0;
  int e = errno;
  kbox_error_make(err, e, "cannot create the sandbox cgroup %s", dir);
  if (e == EACCES || e == EPERM || e == EROFS)
    kbox_error_hint(err, "run as root, delegate kbox's cgroup to this user, or pass --cgroup-parent to a cgroup this user owns");
  else if (e == ENOENT)
    kbox_error_hint(err, "create the parent cgroup first, or leave out --cgroup-parent");
  return -1;
}

/* cgroup v2 part: limits for the controllers v1 does not carry, or just a tracking cgroup. A
   tracking cgroup (every controller is on v1) is only named here: made late, like the v1 part, and
   pid 1 joins it with its v1 cgroups. */
static void create_v2(struct kbox_cgroup *cg, const struct kbox_cgroup_layout *l, const char *override,
                      unsigned want) {
  cleanup_free char *parent = kbox_cgroup_parent_dir(l->v2_mount, l->v2_self, override);
  if (want == 0) {
    cg->v2_dir = join(parent, cg->name);
    cg->v2_parent = steal_ptr(parent);
    return;
  }
  kbox_cgroup_sweep_stale(parent);
  unsigned avail = kbox_cgroup_v2_available(parent) & want;
  for (int c = 0; c < KBOX_CTL_N; c++)
    if ((want & ~avail) & (1u << c)) {
      char reason[4200];
      snprintf(reason, sizeof(reason), "the cgroup v2 %s controller is not available in %s", ctl_names[c], parent);
      why_not(cg, (enum kbox_ctl)c, reason);
    }
  kbox_error_t e = NULL;
  if (avail != 0 && kbox_cgroup_v2_enable(parent, avail, &e) < 0) {
    why_not_err(cg, avail, &e);
    avail = 0;
  }
  char *dir = join(parent, cg->name);
  if (make_dir(cg, dir, &e) < 0) {
    if (want) why_not_err(cg, want, &e);
    else {
      kbox_debug("no cgroup v2 tracking cgroup: %s", e->msg);
      kbox_error_free(&e);
    }
    free(dir);
    return;
  }
  cg->v2_dir = dir;
  cg->v2_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (avail != 0 && kbox_cgroup_v2_apply(dir, avail, &cg->lim, cg->mech, &e) < 0) why_not_err(cg, avail, &e);
  kbox_trace_step("cgroup v2 %s created", avail ? "limits cgroup" : "tracking cgroup");
}

/* cgroup v1 part, planned: the directory per hierarchy holding a controller v2 did not take (the
   reaper is told about them before they exist; a removal of one never made finds nothing). */
static void plan_v1(struct kbox_cgroup *cg, const struct kbox_cgroup_layout *l, const char *override) {
  for (int c = 0; c < KBOX_CTL_N; c++) {
    enum kbox_lim lims[2];
    int n;
    ctl_limits((enum kbox_ctl)c, lims, &n);
    if (l->v1_mount[c] == NULL || cg->mech[lims[0]] != KBOX_MECH_NONE) continue;
    cg->v1_parent[c] = kbox_cgroup_parent_dir(l->v1_mount[c], l->v1_self[c], override);
    cg->v1_dir[c] = join(cg->v1_parent[c], cg->name);
  }
}

/* The planned v2 tracking cgroup, made. */
static void make_v2_tracking(struct kbox_cgroup *cg) {
  if (cg->v2_parent == NULL || cg->v2_dir == NULL) return;
  kbox_error_t e = NULL;
  kbox_cgroup_sweep_stale(cg->v2_parent);
  if (make_dir(cg, cg->v2_dir, &e) < 0) {
    kbox_debug("no cgroup v2 tracking cgroup: %s", e->msg);
    kbox_error_free(&e);
    free(cg->v2_dir);
    cg->v2_dir = NULL;
    return;
  }
  kbox_trace_step("cgroup v2 tracking cgroup created");
}

/* cgroup v1 part, made: create the planned directories and write their limits. */
static void make_v1(struct kbox_cgroup *cg) {
  for (int c = 0; c < KBOX_CTL_N; c++) {
    if (cg->v1_dir[c] == NULL) continue;
    bool shared = false; /* co-mounted controllers (e.g. cpu,memory) share one directory */
    for (int o = 0; o < c; o++) shared |= cg->v1_dir[o] != NULL && strcmp(cg->v1_dir[o], cg->v1_dir[c]) == 0;
    kbox_error_t e = NULL;
    if (!shared) kbox_cgroup_sweep_stale(cg->v1_parent[c]);
    if (!shared && make_dir(cg, cg->v1_dir[c], &e) < 0) {
      why_not_err(cg, 1u << c, &e);
      free(cg->v1_dir[c]);
      cg->v1_dir[c] = NULL;
      continue;
    }
    if (kbox_cgroup_v1_apply(cg->v1_dir[c], (enum kbox_ctl)c, &cg->lim, cg->mech, &e) < 0) why_not_err(cg, 1u << c, &e);
    kbox_trace_step("cgroup v1 %s created", ctl_names[c]);
  }
}

/* Does this machine have any swap device? (Without one, an unenforced swap limit is moot.) */
static bool host_has_swap(void) {
  FILE *f = fopen("/proc/swaps", "re");
  if (f == NULL) return false;
  char line[512];
  int lines = 0;
  while (fgets(line, sizeof(line), f) != NULL) lines++;
  fclose(f);
  return lines > 1;
}

/* Limits without a cgroup: memory and pids go to rlimits, the rest is unenforced. One warning
   line (what, then the first cause with its fix), or an error under --require-limits. */
static int fallback(struct kbox_cgroup *cg, bool require_limits, const char *parent_override, kbox_error_t *err) {
  char what[512] = "";
  const char *why = NULL;
  int more = 0;
  for (int l = 0; l < KBOX_LIM_N; l++) {
    if (cg->mech[l] != KBOX_MECH_NONE) continue;
    const char *how = "NOT enforced";
    if (l == KBOX_LIM_MEMORY) how = "by RLIMIT_AS (address space, not resident memory)";
    if (l == KBOX_LIM_PIDS) how = "by RLIMIT_NPROC";
    if (l == KBOX_LIM_SWAP) {
      if (cg->mech[KBOX_LIM_MEMORY] == KBOX_MECH_RLIMIT) how = "counted in RLIMIT_AS";
      else if (!host_has_swap()) continue; /* no swap device: nothing to limit, nothing to warn about */
    }
    if (strncmp(how, "NOT", 3) != 0) cg->mech[l] = KBOX_MECH_RLIMIT;
    size_t off = strlen(what);
    snprintf(what + off, sizeof(what) - off, "%s%s %s", off ? ", " : "", kbox_lim_name((enum kbox_lim)l), how);
    const char *reason = cg->why_not[l] ? cg->why_not[l] : "no cgroup controller for it";
    if (why == NULL) why = reason;
    else if (strcmp(why, reason) != 0) more++;
  }
  if (what[0] == '\0') return 0;
  char tail[64] = "";
  if (more) snprintf(tail, sizeof(tail), " (and %d similar cause%s)", more, more > 1 ? "s" : "");
  /* An explicit --cgroup-parent asks for cgroups there: falling back to rlimits would ignore it. */
  if (parent_override != NULL)
    return kbox_error_make(err, 0, "--cgroup-parent %s cannot be used: %s%s (without it: %s)", parent_override, why, tail, what);
  if (require_limits)
    return kbox_error_make(err, 0, "--require-limits: not every limit can be enforced by cgroups (%s), because: %s%s",
                           what, why, tail);
  kbox_warn("limits without cgroups: %s; because: %s%s", what, why, tail);
  return 0;
}

struct kbox_cgroup *kbox_cgroup_create_early(const struct kbox_cgroup_layout *layout, const char *parent_override,
                                            const char *id, const struct kbox_cgroup_limits *lim) {
  struct kbox_cgroup *cg = xcalloc(1, sizeof(*cg));
  cg->v2_fd = cg->reaper_fd = -1;
  cg->lim = *lim;
  cg->stats = (struct kbox_cgroup_stats){.memory_peak = -1, .oom_kills = -1, .pids_max_hits = -1, .cpu_seconds = -1};
  cg->name = xasprintf("kbox.%d.%s", (int)getpid(), id);
  unsigned on_v1 = 0;
  for (int c = 0; c < KBOX_CTL_N; c++)
    if (layout->v1_mount[c] != NULL) on_v1 |= 1u << c;
  if (parent_override != NULL) cg->parent_override = xstrdup(parent_override);
  /* v1 names (and the prime path) first: the reaper, started by the first directory made, primes. */
  plan_v1(cg, layout, parent_override);
  cg->v1_prime = kbox_cgroup_v1_prime_path(layout, cg);
  if (layout->v2_mount != NULL) create_v2(cg, layout, parent_override, ((1u << KBOX_CTL_N) - 1) & ~on_v1);
  return cg;
}

int kbox_cgroup_create_late(struct kbox_cgroup *cg, bool require_limits, kbox_error_t *err) {
  make_v2_tracking(cg);
  make_v1(cg);
  return fallback(cg, require_limits, cg->parent_override, err);
}

int kbox_cgroup_create(const struct kbox_cgroup_layout *layout, const char *parent_override, const char *id,
                       const struct kbox_cgroup_limits *lim, bool require_limits, struct kbox_cgroup **out,
                       kbox_error_t *err) {
  struct kbox_cgroup *cg = kbox_cgroup_create_early(layout, parent_override, id, lim);
  if (kbox_cgroup_create_late(cg, require_limits, err) < 0) {
    kbox_cgroup_destroy(cg);
    return -1;
  }
  *out = cg;
  return 0;
}

int kbox_cgroup_attach(struct kbox_cgroup *cg, pid_t pid, bool v2_too, kbox_error_t *err) {
  for (int c = 0; c < KBOX_CTL_N; c++) {
    if (cg->v1_dir[c] == NULL) continue;
    if (kbox_cg_write(cg->v1_dir[c], "cgroup.procs", err, "%d", (int)pid) < 0)
      return kbox_error_prefix(err, "moving the sandbox into its %s cgroup", ctl_names[c]);
    kbox_trace_step("pid 1 attached to cgroup v1 %s", ctl_names[c]);
  }
  if (v2_too && cg->v2_dir != NULL) {
    if (kbox_cg_write(cg->v2_dir, "cgroup.procs", err, "%d", (int)pid) < 0)
      return kbox_error_prefix(err, "moving the sandbox into its cgroup");
    kbox_trace_step("pid 1 attached to cgroup v2");
  }
  return 0;
}

void kbox_cgroup_collect(struct kbox_cgroup *cg) {
  if (cg == NULL || cg->stats.collected) return;
  if (cg->v2_dir != NULL) kbox_cgroup_v2_stats(cg->v2_dir, &cg->stats);
  for (int c = 0; c < KBOX_CTL_N; c++)
    if (cg->v1_dir[c] != NULL) kbox_cgroup_v1_stats(cg->v1_dir[c], (enum kbox_ctl)c, &cg->stats);
  cg->stats.collected = true;
}

/* Free what cg holds in kbox (its directories are removed, or handed to the reaper, before). */
static void cgroup_free(struct kbox_cgroup *cg) {
  for (int c = 0; c < KBOX_CTL_N; c++) {
    free(cg->v1_dir[c]);
    free(cg->v1_parent[c]);
  }
  if (cg->v2_fd >= 0) close(cg->v2_fd);
  if (cg->reaper_fd >= 0) close(cg->reaper_fd); /* EOF: the reaper removes what it was not told is gone */
  if (cg->reaper_parent > 0) {
    int st;
    while (waitpid(cg->reaper_parent, &st, 0) < 0 && errno == EINTR) {}
  }
  for (int l = 0; l < KBOX_LIM_N; l++) free(cg->why_not[l]);
  free(cg->v2_dir);
  free(cg->v2_parent);
  free(cg->v1_prime);
  free(cg->parent_override);
  free(cg->name);
  free(cg);
}

void kbox_cgroup_hand_off(struct kbox_cgroup *cg) {
  if (cg != NULL) cgroup_free(cg);
}

void kbox_cgroup_destroy(struct kbox_cgroup *cg) {
  if (cg == NULL) return;
  if (cg->v2_dir != NULL) kbox_cgroup_remove_dir(cg->v2_dir);
  /* Co-mounted v1 controllers share one directory: remove each directory once, free afterwards. */
  for (int c = 0; c < KBOX_CTL_N; c++) {
    if (cg->v1_dir[c] == NULL) continue;
    bool seen = false;
    for (int o = 0; o < c; o++) seen |= cg->v1_dir[o] != NULL && strcmp(cg->v1_dir[o], cg->v1_dir[c]) == 0;
    if (!seen) kbox_cgroup_remove_dir(cg->v1_dir[c]);
  }
  kbox_cgroup_reaper_forget(cg); /* then the reaper exits without touching them */
  cgroup_free(cg);
}

/* DIR/FILE into buf without stdio (for the reaper, which may run after fork of a threaded kbox). */
static const char *path_at(char *buf, size_t n, const char *dir, const char *file) {
  size_t a = strlen(dir), b = strlen(file);
  if (a + b + 2 > n) return NULL;
  memcpy(buf, dir, a);
  buf[a] = '/';
  memcpy(buf + a + 1, file, b + 1);
  return buf;
}

/* SIGKILL every process of DIR: cgroup.kill (v2, Linux >= 5.14), else each pid in cgroup.procs. */
static void kill_all(const char *dir) {
  char path[4096];
  if (path_at(path, sizeof(path), dir, "cgroup.kill") == NULL) return;
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t w = write(fd, "1", 1);
    close(fd);
    if (w == 1) return;
  }
  path_at(path, sizeof(path), dir, "cgroup.procs");
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[8192];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  long pid = 0;
  for (char *p = buf; *p != '\0'; p++) {
    if (*p >= '0' && *p <= '9') pid = pid * 10 + (*p - '0');
    else {
      if (pid > 1) kill((pid_t)pid, SIGKILL);
      pid = 0;
    }
  }
}

int kbox_cgroup_remove_dir(const char *dir) {
  for (int attempt = 0; attempt < 500; attempt++) {
    if (rmdir(dir) == 0 || errno == ENOENT) return 0;
    if (errno != EBUSY) return -1;
    kill_all(dir);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

/* Pid in a "kbox.<pid>.<id>" name, or 0. */
static pid_t owner_of(const char *name) {
  if (strncmp(name, "kbox.", 5) != 0) return 0;
  char *end = NULL;
  long pid = strtol(name + 5, &end, 10);
  return end != name + 5 && *end == '.' && pid > 0 ? (pid_t)pid : 0;
}

int kbox_cgroup_sweep_stale(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    pid_t owner = owner_of(e->d_name);
    if (owner == 0 || owner == getpid() || kill(owner, 0) == 0 || errno != ESRCH) continue;
    /* Only empty ones: rmdir refuses a cgroup with processes, and we never kill on a guess. */
    if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0) {
      removed++;
      kbox_debug("removed stale cgroup %s/%s", dir, e->d_name);
    }
  }
  closedir(d);
  return removed;
}
