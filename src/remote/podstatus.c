#include "remote/podstatus.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cgroup/cgroup.h"

/* The protection each fallback weakens (-1: none, e.g. no /sys is less exposure, not more). */
static const int step_weakens[KBOX_STEP_N] = {
    [KBOX_STEP_HOSTNAME] = KBOX_PROT_UTSNS, [KBOX_STEP_PROC] = KBOX_PROT_PIDNS,
    [KBOX_STEP_SYSFS] = -1, [KBOX_STEP_IDMAP] = -1};

/* The probe's own verdict on each step (-1: none): a refused step with its fallback standing in is
   partial there too. */
static const int step_feature[KBOX_STEP_N] = {
    [KBOX_STEP_HOSTNAME] = KBOX_PROT_HOSTNAME, [KBOX_STEP_PROC] = KBOX_PROT_PROC,
    [KBOX_STEP_SYSFS] = -1, [KBOX_STEP_IDMAP] = KBOX_PROT_IDMAP};

uint32_t kbox_pod_status_fallbacks(uint32_t required) {
  uint32_t allowed = 0;
  for (int s = 0; s < KBOX_STEP_N; s++)
    if (step_weakens[s] < 0 || !(required & (1u << step_weakens[s]))) allowed |= 1u << s;
  return allowed;
}

/* A fallback weakened PROT: partial, unless the probe already found it missing. */
static void set_partial(struct kbox_pod_status *st, int prot, const char *why) {
  if (kbox_protections_active(&st->prot, prot)) kbox_protections_set_state(&st->prot, prot, KBOX_VERDICT_PARTIAL, why);
}

/* Limits: active only when cgroups enforce every one; partial when some fell back to rlimits. */
static void apply_cgroup(struct kbox_pod_status *st, const struct kbox_cgroup *cg) {
  static const enum kbox_lim lims[] = {KBOX_LIM_MEMORY, KBOX_LIM_PIDS, KBOX_LIM_CPU};
  char fallen[256] = "";
  size_t off = 0, by_cgroup = 0, n = sizeof(lims) / sizeof(lims[0]);
  for (size_t i = 0; cg != NULL && i < n; i++) {
    enum kbox_mech m = cg->mech[lims[i]];
    if (m == KBOX_MECH_CGROUP2 || m == KBOX_MECH_CGROUP1) {
      by_cgroup++;
      continue;
    }
    int w = snprintf(fallen + off, sizeof(fallen) - off, "%s%s by %s", off ? ", " : "", kbox_lim_name(lims[i]),
                     kbox_mech_name(m));
    if (w > 0 && (size_t)w < sizeof(fallen) - off) off += (size_t)w;
  }
  /* the first cause, without its "; fix: ..." (docs/pods.md says what a pod can do) */
  char cause[160] = "no cgroup for the sandbox";
  if (cg != NULL && cg->why_not[KBOX_LIM_MEMORY] != NULL)
    snprintf(cause, sizeof(cause), "%.*s", (int)strcspn(cg->why_not[KBOX_LIM_MEMORY], ";"), cg->why_not[KBOX_LIM_MEMORY]);
  if (cg == NULL || by_cgroup == 0) {
    char text[384];
    snprintf(text, sizeof(text), "no cgroup limits (%s): %s; the pod's own limits still apply", cause,
             cg != NULL ? fallen : "no limits");
    kbox_protections_set(&st->prot, KBOX_PROT_CGROUP, false, text);
    return;
  }
  kbox_protections_set(&st->prot, KBOX_PROT_CGROUP, true, "");
  if (by_cgroup < n) {
    char text[320];
    snprintf(text, sizeof(text), "not every limit is a cgroup limit: %s", fallen);
    set_partial(st, KBOX_PROT_CGROUP, text);
  }
}

void kbox_pod_status_apply(struct kbox_pod_status *st, const struct kbox_achieved *achieved,
                           const struct kbox_cgroup *cg) {
  st->achieved = *achieved;
  for (int s = 0; s < KBOX_STEP_N; s++) {
    if (!kbox_achieved_degraded(achieved, s)) continue;
    if (step_weakens[s] >= 0) set_partial(st, step_weakens[s], achieved->why[s]);
    if (step_feature[s] >= 0) kbox_protections_set_state(&st->prot, step_feature[s], KBOX_VERDICT_PARTIAL, achieved->why[s]);
  }
  apply_cgroup(st, cg);
}

int kbox_pod_status_check(const struct kbox_pod_status *st, uint32_t required, kbox_error_t *err) {
  return kbox_protections_check(&st->prot, required, err);
}

bool kbox_pod_status_complete(const struct kbox_pod_status *st) {
  for (int i = 0; i < KBOX_PROT_COUNT; i++)
    if (!kbox_protections_active(&st->prot, i)) return false;
  return true;
}

void kbox_pod_status_summary(const struct kbox_pod_status *st, char *buf, size_t n) {
  kbox_protections_summary(&st->prot, buf, n);
}

json_t *kbox_pod_status_json(const struct kbox_pod_status *st) {
  json_t *prot = kbox_protections_json(&st->prot), *fallbacks = json_object();
  for (int s = 0; s < KBOX_STEP_N; s++)
    if (kbox_achieved_degraded(&st->achieved, s))
      json_object_set_new(fallbacks, kbox_step_names[s], json_string(st->achieved.why[s]));
  json_object_set_new(prot, "fallbacks", fallbacks);
  return prot;
}

int kbox_pod_status_write(const struct kbox_pod_status *st, json_t *extra, const char *path, kbox_error_t *err) {
  return kbox_protections_write_json(kbox_pod_status_json(st), extra, path, err);
}
