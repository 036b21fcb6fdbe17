#include "sandbox/cgroup_probe.h"

#include <stdio.h>
#include <string.h>

#include "cgroup/cgroup.h"
#include "cgroup/limits.h"
#include "sandbox/probe_child.h"

/* Between clone3 and GO: the v1 hierarchies (and v2 when clone3 could not place the child). */
static int attach(pid_t pid, void *arg, kbox_error_t *err) {
  struct kbox_cgroup *cg = arg;
  return kbox_cgroup_attach(cg, pid, cg->v2_fd < 0, err);
}

/* "memory: cgroup1, pids: cgroup1, cpu: rlimit" and how many of them a cgroup carries. */
static int mechanisms(const struct kbox_cgroup *cg, char *buf, size_t n) {
  static const enum kbox_lim lims[] = {KBOX_LIM_MEMORY, KBOX_LIM_PIDS, KBOX_LIM_CPU};
  int by_cgroup = 0;
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
    enum kbox_mech m = cg->mech[lims[i]];
    by_cgroup += m == KBOX_MECH_CGROUP2 || m == KBOX_MECH_CGROUP1;
    int w = snprintf(buf + off, n - off, "%s%s: %s", i ? ", " : "", kbox_lim_name(lims[i]),
                     m == KBOX_MECH_NONE ? "not enforced" : kbox_mech_name(m));
    if (w > 0 && (size_t)w < n - off) off += (size_t)w;
  }
  return by_cgroup;
}

/* The first reason a limit has no cgroup ("" when every one has). */
static const char *first_reason(const struct kbox_cgroup *cg) {
  for (int l = 0; l < KBOX_LIM_N; l++)
    if (cg->why_not[l] != NULL) return cg->why_not[l];
  return "";
}

void kbox_probe_cgroup(struct kbox_verdict *v, const struct kbox_spec *spec) {
  struct kbox_cgroup_layout layout;
  kbox_error_t err = NULL;
  const char *mode = "none";
  if (kbox_cgroup_layout_read(&layout, &err) == 0) mode = kbox_cgroup_layout_mode(&layout);
  kbox_error_free(&err);
  /* A name of its own: the probe's reaper removes its directories asynchronously, and must never
     meet the sandbox cgroup that kbox run creates next under the spec's id. */
  char id[128];
  snprintf(id, sizeof(id), "probe-%.100s", spec->id ? spec->id : "x");
  struct kbox_spec_limits lim = spec->limits;
  lim.require_limits = false;
  struct kbox_cgroup *cg = NULL;
  /* Both halves as kbox run does them (the v1 half runs while pid 1 mounts there; here, before). */
  if (kbox_limits_setup(&lim, id, &cg, &err) < 0 || kbox_limits_finish(&lim, cg, &err) < 0) {
    kbox_cgroup_destroy(cg);
    cg = NULL;
    kbox_verdict_set(v, KBOX_FEAT_CGROUP, KBOX_VERDICT_MISSING, err->errno_, NULL, "mode %s; creating the sandbox cgroup: %s", mode, err->msg);
    kbox_error_free(&err);
    kbox_cgroup_layout_free(&layout);
    return;
  }
  struct kbox_probe_job job = {.ns_flags = 0, .cgroup_fd = cg->v2_fd, .cloned = attach, .arg = cg};
  char mech[256];
  int by_cgroup = mechanisms(cg, mech, sizeof(mech));
  if (kbox_probe_spawn(spec, &job, NULL, &err) < 0) {
    kbox_verdict_set(v, KBOX_FEAT_CGROUP, KBOX_VERDICT_MISSING, err->errno_, NULL,
                     "mode %s; putting a process into the sandbox cgroup: %s", mode, err->msg);
    kbox_error_free(&err);
  } else if (by_cgroup == 3) {
    kbox_verdict_set(v, KBOX_FEAT_CGROUP, KBOX_VERDICT_OK, 0, NULL, "mode %s; %s", mode, mech);
  } else {
    kbox_verdict_set(v, KBOX_FEAT_CGROUP, by_cgroup ? KBOX_VERDICT_PARTIAL : KBOX_VERDICT_MISSING, 0, NULL,
                     "mode %s; %s; because: %s", mode, mech, first_reason(cg));
  }
  kbox_cgroup_destroy(cg);
  kbox_cgroup_layout_free(&layout);
}
