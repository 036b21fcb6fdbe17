/* Glue between a spec's limits and its cgroup: set-up, the verdict's limit fields, the one-line
   explanation when a limit ended the workload. Only the limits part of the spec comes here. */
#ifndef KBOX_LIMITS_H
#define KBOX_LIMITS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cgroup/cgroup.h"
#include "spec/spec.h"

/* Before clone3: the sandbox cgroup's v2 part (named after the sandbox id), the names of its v1
   directories, and its reaper. */
int kbox_limits_setup(const struct kbox_spec_limits *lim, const char *id, struct kbox_cgroup **out, kbox_error_t *err);
/* kbox_limits_setup in two steps, for a caller that adjusts the plan (src/warm/pool_cgroup.c):
   the cgroup's names and limits, then its reaper (on failure *cg is destroyed and NULL). */
struct kbox_cgroup *kbox_limits_plan(const struct kbox_spec_limits *lim, const char *id);
int kbox_limits_start_reaper(struct kbox_cgroup **cg, kbox_error_t *err);
/* After clone3, while pid 1 mounts: the v1 directories with their limits, the rlimit fallback for
   what no cgroup carries (one warning, or the --require-limits error). */
int kbox_limits_finish(const struct kbox_spec_limits *lim, struct kbox_cgroup *cg, kbox_error_t *err);
/* Add memory_peak, oom_killed, pids_limit_hit, cgroup_cpu_seconds and limits{} to the verdict. */
void kbox_limits_report(const struct kbox_cgroup *cg, const struct kbox_spec_limits *lim, json_t *report);
/* True when the kernel's OOM killer hit the sandbox. */
bool kbox_limits_oom_killed(const struct kbox_cgroup *cg);
/* A sentence for a person when a limit stopped the workload (false when none did). */
bool kbox_limits_explain(const struct kbox_cgroup *cg, const struct kbox_spec_limits *lim, char *buf, size_t n);

#endif
