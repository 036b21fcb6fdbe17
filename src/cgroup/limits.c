#include "cgroup/limits.h"

#include <stdio.h>

#include "util/log.h"
#include "util/trace.h"

struct kbox_cgroup *kbox_limits_plan(const struct kbox_spec_limits *limits, const char *id) {
  struct kbox_cgroup_layout layout;
  kbox_error_t lerr = NULL;
  if (kbox_cgroup_layout_read(&layout, &lerr) < 0) {
    kbox_debug("cannot find the cgroup hierarchies: %s", lerr->msg);
    kbox_error_free(&lerr);
  }
  struct kbox_cgroup_limits lim = {
      .memory = limits->memory_bytes, .swap = limits->swap_bytes, .pids = limits->pids, .cpus = limits->cpus};
  struct kbox_cgroup *cg = kbox_cgroup_create_early(&layout, limits->cgroup_parent, id, &lim);
  kbox_cgroup_layout_free(&layout);
  kbox_rlimits_plan_values(cg);
  return cg;
}

int kbox_limits_start_reaper(struct kbox_cgroup **cg, kbox_error_t *err) {
  if (kbox_cgroup_reaper_start(*cg, err) < 0) {
    kbox_cgroup_destroy(*cg);
    *cg = NULL;
    return -1;
  }
  return 0;
}

int kbox_limits_setup(const struct kbox_spec_limits *limits, const char *id, struct kbox_cgroup **out, kbox_error_t *err) {
  *out = kbox_limits_plan(limits, id);
  /* Started now even when no directory was made yet: it primes the v1 move (cgroup/reaper.c). */
  return kbox_limits_start_reaper(out, err);
}

int kbox_limits_finish(const struct kbox_spec_limits *lim, struct kbox_cgroup *cg, kbox_error_t *err) {
  if (kbox_cgroup_create_late(cg, lim->require_limits, err) < 0) return -1;
  kbox_rlimits_plan(cg);
  return 0;
}

/* {"value": V, "mechanism": M} */
static json_t *limit(json_t *value, const char *mechanism) {
  return json_pack("{s:o, s:s}", "value", value, "mechanism", mechanism);
}

bool kbox_limits_oom_killed(const struct kbox_cgroup *cg) { return cg != NULL && cg->stats.oom_kills > 0; }

void kbox_limits_report(const struct kbox_cgroup *cg, const struct kbox_spec_limits *lim, json_t *r) {
  if (cg == NULL) return;
  const struct kbox_cgroup_stats *s = &cg->stats;
  json_object_set_new(r, "memory_peak", s->memory_peak >= 0 ? json_integer(s->memory_peak) : json_null());
  json_object_set_new(r, "oom_killed", s->oom_kills >= 0 ? json_boolean(s->oom_kills > 0) : json_null());
  json_object_set_new(r, "pids_limit_hit", s->pids_max_hits >= 0 ? json_boolean(s->pids_max_hits > 0) : json_null());
  json_object_set_new(r, "cgroup_cpu_seconds", s->cpu_seconds >= 0 ? json_real(s->cpu_seconds) : json_null());
  json_t *l = json_object();
  json_object_set_new(l, "memory", limit(json_integer((json_int_t)lim->memory_bytes), kbox_mech_name(cg->mech[KBOX_LIM_MEMORY])));
  json_object_set_new(l, "swap", limit(json_integer((json_int_t)lim->swap_bytes), kbox_mech_name(cg->mech[KBOX_LIM_SWAP])));
  json_object_set_new(l, "pids", limit(json_integer((json_int_t)lim->pids), kbox_mech_name(cg->mech[KBOX_LIM_PIDS])));
  json_object_set_new(l, "cpu", limit(json_real(lim->cpus), kbox_mech_name(cg->mech[KBOX_LIM_CPU])));
  json_object_set_new(l, "nofile", limit(json_integer((json_int_t)lim->nofile), "rlimit"));
  json_object_set_new(l, "core", limit(json_integer(0), "rlimit"));
  json_object_set_new(l, "disk", limit(json_integer((json_int_t)lim->disk_bytes), "tmpfs"));
  json_object_set_new(l, "timeout_ms", limit(json_integer((json_int_t)lim->timeout_ms), lim->timeout_ms ? "kbox" : "none"));
  json_object_set_new(r, "limits", l);
}

/* "64 MiB", "1.5 GiB" */
static void human_size(uint64_t b, char *buf, size_t n) {
  static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)b;
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; u++; }
  snprintf(buf, n, "%.4g %s", v, units[u]);
}

bool kbox_limits_explain(const struct kbox_cgroup *cg, const struct kbox_spec_limits *lim, char *buf, size_t n) {
  if (cg == NULL) return false;
  char size[32];
  if (cg->stats.oom_kills > 0) {
    human_size(lim->memory_bytes, size, sizeof(size));
    snprintf(buf, n, "the workload ran out of memory (limit %s) and was killed", size);
    return true;
  }
  if (cg->stats.pids_max_hits > 0) {
    snprintf(buf, n, "the workload hit the process limit (%llu processes/threads, --pids); %lld fork(s) failed",
             (unsigned long long)lim->pids, (long long)cg->stats.pids_max_hits);
    return true;
  }
  return false;
}
