/* Glue between a sandbox spec and its cgroup: set-up, the verdict's limit fields, the one-line
   explanation when a limit ended the workload. */
#ifndef KBOX_LIMITS_H
#define KBOX_LIMITS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cgroup/cgroup.h"
#include "sandbox/spec.h"

/* Create the sandbox cgroup for spec (or the rlimit plan when there is none), watched by its reaper. */
int kbox_limits_setup(const struct kbox_spec *spec, struct kbox_cgroup **out, kbox_error_t *err);
/* Add memory_peak, oom_killed, pids_limit_hit, cgroup_cpu_seconds and limits{} to the verdict. */
void kbox_limits_report(const struct kbox_cgroup *cg, const struct kbox_spec *spec, json_t *report);
/* True when the kernel's OOM killer hit the sandbox. */
bool kbox_limits_oom_killed(const struct kbox_cgroup *cg);
/* A sentence for a person when a limit stopped the workload (false when none did). */
bool kbox_limits_explain(const struct kbox_cgroup *cg, const struct kbox_spec *spec, char *buf, size_t n);

#endif
