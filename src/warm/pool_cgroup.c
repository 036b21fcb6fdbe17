/* A claim takes the pool kernel's cgroups instead of moving the kernel (docs/warm.md, "The pool"):
   the holder made them when it forked the kernel, so renaming its v1 directories to this
   sandbox's names (rename(2) within one parent is allowed on cgroup v1) puts the kernel in this
   id's cgroups without a migration (each v1 migration waits for an RCU grace period: 18-65 ms
   here), its cgroup namespace stays rooted at its own cgroup, and the memory it charged while it
   started stays charged to it. cgroup v2 has no rename: its tracking cgroup is taken as it is. */
#include "warm/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup/cgroup.h"
#include "cgroup/files.h"
#include "cgroup/limits.h"
#include "util/alloc.h"
#include "util/log.h"
#include "util/trace.h"

/* Does dir sit directly in parent? */
static bool in_parent(const char *dir, const char *parent) {
  size_t n = strlen(parent);
  return strncmp(dir, parent, n) == 0 && dir[n] == '/' && dir[n + 1] != '\0' && strchr(dir + n + 1, '/') == NULL;
}

/* The first v1 controller before c with the same directory (co-mounted controllers share one). */
static bool shared_before(const struct kbox_cgroup *cg, int c) {
  for (int o = 0; o < c; o++)
    if (cg->v1_dir[o] != NULL && strcmp(cg->v1_dir[o], cg->v1_dir[c]) == 0) return true;
  return false;
}

/* Why the offered cgroups cannot become cg's ("" when they can). */
static const char *check(const struct kbox_cgroup *cg, const char (*from)[512]) {
  if (cg->v2_dir != NULL && cg->v2_parent == NULL) return "the limits are on cgroup v2, which cannot rename";
  if (cg->v2_parent != NULL && (from[KBOX_POOL_CG_V2][0] == '\0' || !in_parent(from[KBOX_POOL_CG_V2], cg->v2_parent)))
    return "the pool kernel's cgroup v2 is elsewhere";
  for (int c = 0; c < KBOX_CTL_N; c++) {
    if (cg->v1_dir[c] == NULL) continue;
    const char *f = from[KBOX_POOL_CG_V1 + c];
    if (f[0] == '\0' || !in_parent(f, cg->v1_parent[c])) return "the pool kernel's cgroups have another parent";
  }
  const char *mem = cg->v1_dir[KBOX_CTL_MEMORY] != NULL ? from[KBOX_POOL_CG_V1 + KBOX_CTL_MEMORY] : NULL;
  int64_t used = 0;
  if (mem != NULL && cg->lim.memory > 0 && kbox_cg_read_int(mem, "memory.usage_in_bytes", &used) && (uint64_t)used >= cg->lim.memory / 10 * 9)
    return "the pool kernel already uses nine tenths of --memory";
  const char *pids = cg->v1_dir[KBOX_CTL_PIDS] != NULL ? from[KBOX_POOL_CG_V1 + KBOX_CTL_PIDS] : NULL;
  if (pids != NULL && cg->lim.pids > 0 && kbox_cg_read_int(pids, "pids.current", &used) && (uint64_t)used >= cg->lim.pids)
    return "the pool kernel already has --pids tasks";
  return "";
}

int kbox_warm_pool_plan_cgroups(const struct kbox_spec *spec, struct kbox_cgroup **out, const struct kbox_pool_msg *offer,
                                kbox_error_t *err) {
  struct kbox_cgroup *cg = kbox_limits_plan(&spec->limits, spec->id);
  /* No head start for a v1 move when there will be none: the reaper's priming write would hold
     the cgroup lock that our own forks wait for during its RCU grace period. */
  if (check(cg, offer->cgroups)[0] == '\0') {
    free(cg->v1_prime);
    cg->v1_prime = NULL;
  }
  if (kbox_limits_start_reaper(&cg, err) < 0) return -1;
  *out = cg;
  return 0;
}

int kbox_warm_pool_take_cgroups(struct kbox_cgroup *cg, const struct kbox_pool_msg *offer, bool *taken, const char **why,
                                kbox_error_t *err) {
  *taken = false;
  *why = check(cg, offer->cgroups);
  if ((*why)[0] != '\0') return 0;
  for (int c = 0; c < KBOX_CTL_N; c++) {
    if (cg->v1_dir[c] == NULL || shared_before(cg, c)) continue;
    /* Known to our reaper before it exists under our name: a SIGKILL leaves nothing behind. */
    if (kbox_cgroup_reaper_watch(cg, cg->v1_dir[c], err) < 0) return -1;
    if (rename(offer->cgroups[KBOX_POOL_CG_V1 + c], cg->v1_dir[c]) < 0)
      return kbox_error_make(err, errno, "renaming the pool kernel's cgroup %s to %s", offer->cgroups[KBOX_POOL_CG_V1 + c],
                             cg->v1_dir[c]);
  }
  if (cg->v2_parent != NULL) { /* made by kbox_limits_finish, which finds it there */
    free(cg->v2_dir);
    cg->v2_dir = xstrdup(offer->cgroups[KBOX_POOL_CG_V2]);
  }
  cg->adopt_existing = *taken = true;
  kbox_trace_step("pool: the kernel's cgroups renamed to this id's");
  return 0;
}

void kbox_warm_pool_release_cgroups(struct kbox_cgroup *cg) {
  if (cg == NULL) return;
  kbox_cgroup_reaper_forget(cg); /* the claimer's reaper watches them now */
  free(cg->v2_dir);
  cg->v2_dir = NULL;
  for (int c = 0; c < KBOX_CTL_N; c++) {
    free(cg->v1_dir[c]);
    cg->v1_dir[c] = NULL;
  }
}
