#include "remote/podstatus.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cgroup/cgroup.h"

/* The protection each fallback weakens (-1: none, e.g. no /sys is less exposure, not more). */
static const int step_weakens[KBOX_STEP_N] = {
    [KBOX_STEP_HOSTNAME] = KBOX_PROT_UTSNS, [KBOX_STEP_PROC] = KBOX_PROT_PIDNS,
    [KBOX_STEP_SYSFS] = -1, [KBOX_STEP_IDMAP] = -1};

uint32_t kbox_pod_status_fallbacks(uint32_t required) {
  uint32_t allowed = 0;
  for (int s = 0; s < KBOX_STEP_N; s++)
    if (step_weakens[s] < 0 || !(required & (1u << step_weakens[s]))) allowed |= 1u << s;
  return allowed;
}

static void set_partial(struct kbox_pod_status *st, int prot, const char *why) {
  if (!st->prot.active[prot]) return;
  st->partial[prot] = true;
  snprintf(st->why[prot], sizeof(st->why[prot]), "%s", why);
}

static void set_missing(struct kbox_pod_status *st, int prot, const char *why) {
  kbox_protections_set(&st->prot, prot, false, why);
  st->partial[prot] = false;
  snprintf(st->why[prot], sizeof(st->why[prot]), "%s", why);
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
    set_missing(st, KBOX_PROT_CGROUP, text);
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
  for (int i = 0; i < KBOX_PROT_COUNT; i++)
    if (!st->prot.active[i]) snprintf(st->why[i], sizeof(st->why[i]), "%s", st->prot.why[i]);
  for (int s = 0; s < KBOX_STEP_N; s++)
    if (kbox_achieved_degraded(achieved, s) && step_weakens[s] >= 0) set_partial(st, step_weakens[s], achieved->why[s]);
  apply_cgroup(st, cg);
}

int kbox_pod_status_check(const struct kbox_pod_status *st, uint32_t required, kbox_error_t *err) {
  char bad[1024] = "";
  size_t off = 0;
  for (int i = 0; i < KBOX_PROT_COUNT; i++) {
    if (!(required & (1u << i)) || (st->prot.active[i] && !st->partial[i])) continue;
    const char *why = st->why[i][0] != '\0' ? st->why[i] : st->prot.why[i];
    int n = snprintf(bad + off, sizeof(bad) - off, "%s%s %s (%s)", off ? ", " : "", kbox_prot_names[i],
                     st->prot.active[i] ? "partial" : "missing", why);
    if (n > 0 && (size_t)n < sizeof(bad) - off) off += (size_t)n;
  }
  if (off == 0) return 0;
  kbox_error_make(err, 0, "KBOX_REQUIRE: required protection not achieved in this pod: %s", bad);
  return kbox_error_hint(err, "allow it in the pod's securityContext (see docs/pods.md) or remove it from KBOX_REQUIRE");
}

bool kbox_pod_status_complete(const struct kbox_pod_status *st) {
  for (int i = 0; i < KBOX_PROT_COUNT; i++)
    if (!st->prot.active[i] || st->partial[i]) return false;
  return true;
}

/* Append to buf at *off, keeping it terminated when it fills up. */
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t n, size_t *off, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf + *off, n - *off, fmt, ap);
  va_end(ap);
  if (w > 0) *off = (size_t)w < n - *off ? *off + (size_t)w : n - 1;
}

void kbox_pod_status_summary(const struct kbox_pod_status *st, char *buf, size_t n) {
  static const char *const heads[] = {"protections active: ", "; partial: ", "; missing: "};
  size_t off = 0;
  buf[0] = '\0';
  for (int pass = 0; pass < 3; pass++) {
    append(buf, n, &off, "%s", heads[pass]);
    bool first = true;
    for (int i = 0; i < KBOX_PROT_COUNT; i++) {
      int kind = !st->prot.active[i] ? 2 : st->partial[i] ? 1 : 0;
      if (kind != pass) continue;
      if (pass == 0) append(buf, n, &off, "%s%s", first ? "" : ",", kbox_prot_names[i]);
      else append(buf, n, &off, "%s%s (%s)", first ? "" : ", ", kbox_prot_names[i], st->why[i][0] != '\0' ? st->why[i] : st->prot.why[i]);
      first = false;
    }
    if (first) append(buf, n, &off, "none");
  }
}

json_t *kbox_pod_status_json(const struct kbox_pod_status *st) {
  json_t *active = json_array(), *partial = json_object(), *missing = json_object(), *fallbacks = json_object();
  for (int i = 0; i < KBOX_PROT_COUNT; i++) {
    if (!st->prot.active[i]) json_object_set_new(missing, kbox_prot_names[i], json_string(st->why[i][0] != '\0' ? st->why[i] : st->prot.why[i]));
    else if (st->partial[i]) json_object_set_new(partial, kbox_prot_names[i], json_string(st->why[i]));
    else json_array_append_new(active, json_string(kbox_prot_names[i]));
  }
  for (int s = 0; s < KBOX_STEP_N; s++)
    if (kbox_achieved_degraded(&st->achieved, s))
      json_object_set_new(fallbacks, kbox_step_names[s], json_string(st->achieved.why[s]));
  return json_pack("{s:o, s:o, s:o, s:o}", "active", active, "partial", partial, "missing", missing, "fallbacks", fallbacks);
}

int kbox_pod_status_write(const struct kbox_pod_status *st, json_t *extra, const char *path, kbox_error_t *err) {
  json_t *doc = json_object();
  json_object_set_new(doc, "protections", kbox_pod_status_json(st));
  if (extra != NULL) json_object_update_missing(doc, extra);
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int r = json_dump_file(doc, tmp, JSON_INDENT(2));
  json_decref(doc);
  if (r < 0) return kbox_error_make(err, errno, "KBOX_STATUS_FILE: writing %s", tmp);
  chmod(tmp, 0644);
  if (rename(tmp, path) < 0) return kbox_error_make(err, errno, "KBOX_STATUS_FILE: renaming %s to %s", tmp, path);
  return 0;
}
