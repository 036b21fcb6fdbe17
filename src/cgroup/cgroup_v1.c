/* cgroup v1 (and hybrid hosts): the same limits written with the v1 controllers' files. */
#include "cgroup/cgroup.h"

#include "cgroup/files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/alloc.h"

#define CPU_PERIOD_US 100000

/* memory.limit_in_bytes, then memory.memsw.limit_in_bytes (memory + swap) where swap is accounted. */
static int apply_memory(const char *dir, const struct kbox_cgroup_limits *lim, enum kbox_mech mech[KBOX_LIM_N],
                        kbox_error_t *err) {
  bool memsw = kbox_cg_exists(dir, "memory.memsw.limit_in_bytes");
  if (kbox_cg_write(dir, "memory.limit_in_bytes", err, "%llu", (unsigned long long)lim->memory) < 0) {
    /* Raising the limit of a cgroup that has one (a warm pool kernel's): memory + swap first. */
    if (!memsw || (*err)->errno_ != EINVAL) return -1;
    kbox_error_free(err);
    if (kbox_cg_write(dir, "memory.memsw.limit_in_bytes", err, "%llu", (unsigned long long)(lim->memory + lim->swap)) < 0 ||
        kbox_cg_write(dir, "memory.limit_in_bytes", err, "%llu", (unsigned long long)lim->memory) < 0)
      return -1;
  }
  mech[KBOX_LIM_MEMORY] = KBOX_MECH_CGROUP1;
  if (memsw) {
    if (kbox_cg_write(dir, "memory.memsw.limit_in_bytes", err, "%llu", (unsigned long long)(lim->memory + lim->swap)) < 0)
      return -1;
    mech[KBOX_LIM_SWAP] = KBOX_MECH_CGROUP1;
  }
  return 0;
}

int kbox_cgroup_v1_apply(const char *dir, enum kbox_ctl ctl, const struct kbox_cgroup_limits *lim,
                         enum kbox_mech mech[KBOX_LIM_N], kbox_error_t *err) {
  switch (ctl) {
  case KBOX_CTL_MEMORY: return apply_memory(dir, lim, mech, err);
  case KBOX_CTL_PIDS:
    if (kbox_cg_write(dir, "pids.max", err, "%llu", (unsigned long long)lim->pids) < 0) return -1;
    mech[KBOX_LIM_PIDS] = KBOX_MECH_CGROUP1;
    return 0;
  case KBOX_CTL_CPU: {
    unsigned long long quota = (unsigned long long)(lim->cpus * CPU_PERIOD_US + 0.5);
    if (quota < 1000) quota = 1000;
    if (kbox_cg_write(dir, "cpu.cfs_period_us", err, "%d", CPU_PERIOD_US) < 0 ||
        kbox_cg_write(dir, "cpu.cfs_quota_us", err, "%llu", quota) < 0)
      return -1;
    mech[KBOX_LIM_CPU] = KBOX_MECH_CGROUP1;
    return 0;
  }
  default: return kbox_error_make(err, 0, "unknown controller %d", (int)ctl);
  }
}

void kbox_cgroup_v1_stats(const char *dir, enum kbox_ctl ctl, struct kbox_cgroup_stats *s) {
  int64_t v;
  if (ctl == KBOX_CTL_MEMORY) {
    if (kbox_cg_read_int(dir, "memory.max_usage_in_bytes", &v)) s->memory_peak = v;
    /* oom_kill in memory.oom_control counts the kernel's OOM kills in this cgroup (Linux >= 4.13). */
    if (kbox_cg_read_keyed(dir, "memory.oom_control", "oom_kill", &v)) s->oom_kills = v;
  } else if (ctl == KBOX_CTL_PIDS) {
    if (kbox_cg_read_keyed(dir, "pids.events", "max", &v)) s->pids_max_hits = v;
  }
}

char *kbox_cgroup_v1_prime_path(const struct kbox_cgroup_layout *l, const struct kbox_cgroup *cg) {
  for (int c = 0; c < KBOX_CTL_N; c++) {
    if (cg->v1_dir[c] == NULL || l->v1_mount[c] == NULL) continue;
    char *self = kbox_cgroup_parent_dir(l->v1_mount[c], l->v1_self[c], NULL);
    char *out = xasprintf("%s/cgroup.procs", self);
    free(self);
    return out;
  }
  return NULL;
}
