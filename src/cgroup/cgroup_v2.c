/* cgroup v2: enabling controllers for children, writing limits, reading the verdict counters. */
#include "cgroup/cgroup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup/files.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define CPU_PERIOD_US 100000

static const char *const v2_names[KBOX_CTL_N] = {"memory", "pids", "cpu"};

/* Bitmask of the kbox controllers named in DIR/FILE (a space-separated list). */
static unsigned controllers_in(const char *dir, const char *file) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  cleanup_free char *text = NULL;
  kbox_error_t err = NULL;
  if (kbox_read_file(path, 4096, &text, NULL, &err) < 0) {
    kbox_error_free(&err);
    return 0;
  }
  unsigned mask = 0;
  char *save = NULL;
  for (char *t = strtok_r(text, " \n", &save); t != NULL; t = strtok_r(NULL, " \n", &save))
    for (int c = 0; c < KBOX_CTL_N; c++)
      if (strcmp(t, v2_names[c]) == 0) mask |= 1u << c;
  return mask;
}

unsigned kbox_cgroup_v2_available(const char *dir) { return controllers_in(dir, "cgroup.controllers"); }

/* Turn a failed write to PARENT/cgroup.subtree_control into an explanation with a fix. */
static int explain_enable_failure(const char *parent, const char *name, kbox_error_t *err) {
  int e = (*err)->errno_;
  if (e == EBUSY)
    return kbox_error_hint(err,
                           "cgroup v2 gives controllers (%s) to child cgroups only when %s holds no processes "
                           "itself (the no-internal-processes rule), and kbox runs there; start kbox in a leaf of "
                           "a delegated subtree (e.g. systemd-run --scope -p Delegate=yes kbox run ...) or pass "
                           "--cgroup-parent to an empty cgroup whose subtree_control lists memory pids cpu",
                           name, parent);
  if (e == EACCES || e == EPERM || e == EROFS)
    return kbox_error_hint(err,
                           "this user may not change %s/cgroup.subtree_control; delegate that subtree to the user "
                           "(systemd: Delegate=yes) or pass --cgroup-parent to a cgroup the user owns",
                           parent);
  if (e == ENOENT) return kbox_error_hint(err, "%s is not a cgroup v2 directory; check --cgroup-parent", parent);
  return -1;
}

int kbox_cgroup_v2_enable(const char *parent, unsigned mask, kbox_error_t *err) {
  unsigned need = mask & ~controllers_in(parent, "cgroup.subtree_control");
  if (need == 0) return 0;
  unsigned avail = kbox_cgroup_v2_available(parent);
  char list[64] = "", names[64] = "";
  for (int c = 0; c < KBOX_CTL_N; c++) {
    if (!(need & (1u << c))) continue;
    if (!(avail & (1u << c)))
      return kbox_error_make(err, 0,
                             "the %s controller is not available in %s (missing from its cgroup.controllers); "
                             "fix: enable it in the cgroup.subtree_control of every ancestor, or pass "
                             "--cgroup-parent to a cgroup that has it",
                             v2_names[c], parent);
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s+%s", *list ? " " : "", v2_names[c]);
    snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", *names ? " " : "", v2_names[c]);
  }
  if (kbox_cg_write(parent, "cgroup.subtree_control", err, "%s", list) < 0) {
    kbox_error_prefix(err, "enabling the %s controller(s) for sandbox cgroups", names);
    return explain_enable_failure(parent, names, err);
  }
  return 0;
}

/* memory.max, memory.swap.max (when the kernel accounts swap) and memory.oom.group. */
static int apply_memory(const char *dir, const struct kbox_cgroup_limits *lim, enum kbox_mech mech[KBOX_LIM_N],
                        kbox_error_t *err) {
  if (kbox_cg_write(dir, "memory.max", err, "%llu", (unsigned long long)lim->memory) < 0) return -1;
  mech[KBOX_LIM_MEMORY] = KBOX_MECH_CGROUP2;
  if (kbox_cg_exists(dir, "memory.swap.max")) {
    if (kbox_cg_write(dir, "memory.swap.max", err, "%llu", (unsigned long long)lim->swap) < 0) return -1;
    mech[KBOX_LIM_SWAP] = KBOX_MECH_CGROUP2;
  }
  /* One OOM kill ends the whole sandbox instead of leaving a half-dead kernel behind. */
  if (kbox_cg_write(dir, "memory.oom.group", err, "1") < 0) return -1;
  return 0;
}

int kbox_cgroup_v2_apply(const char *dir, unsigned mask, const struct kbox_cgroup_limits *lim,
                         enum kbox_mech mech[KBOX_LIM_N], kbox_error_t *err) {
  int rc = 0;
  if ((mask & (1u << KBOX_CTL_MEMORY)) && apply_memory(dir, lim, mech, err) < 0) rc = -1;
  if (mask & (1u << KBOX_CTL_PIDS)) {
    if (kbox_cg_write(dir, "pids.max", err, "%llu", (unsigned long long)lim->pids) < 0) rc = -1;
    else mech[KBOX_LIM_PIDS] = KBOX_MECH_CGROUP2;
  }
  if (mask & (1u << KBOX_CTL_CPU)) {
    unsigned long long quota = (unsigned long long)(lim->cpus * CPU_PERIOD_US + 0.5);
    if (quota < 1000) quota = 1000;
    if (kbox_cg_write(dir, "cpu.max", err, "%llu %d", quota, CPU_PERIOD_US) < 0) rc = -1;
    else mech[KBOX_LIM_CPU] = KBOX_MECH_CGROUP2;
  }
  return rc;
}

void kbox_cgroup_v2_stats(const char *dir, struct kbox_cgroup_stats *s) {
  int64_t v;
  if (kbox_cg_read_int(dir, "memory.peak", &v)) s->memory_peak = v;
  if (kbox_cg_read_keyed(dir, "memory.events", "oom_kill", &v)) s->oom_kills = v;
  if (kbox_cg_read_keyed(dir, "pids.events", "max", &v)) s->pids_max_hits = v;
  /* cpu.stat's usage is there even without the cpu controller (hybrid tracking cgroup). */
  if (kbox_cg_read_keyed(dir, "cpu.stat", "usage_usec", &v)) s->cpu_seconds = (double)v / 1e6;
}
