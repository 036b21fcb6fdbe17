/* What kbox entrypoint reports: the probe corrected with the sandbox's fallbacks and the limits'
   real mechanism (cgroup active only when cgroups enforce the limits), KBOX_REQUIRE on partial. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "cgroup/cgroup.h"
#include "remote/podstatus.h"

static void all_active(struct kbox_pod_status *st) {
  memset(st, 0, sizeof(*st));
  for (int i = 0; i < KBOX_PROT_COUNT; i++) kbox_protections_set(&st->prot, i, true, "");
}

static bool active(const struct kbox_pod_status *st, int i) { return st->prot.probe.v[i].state != KBOX_VERDICT_MISSING; }
static bool partial(const struct kbox_pod_status *st, int i) { return st->prot.probe.v[i].state == KBOX_VERDICT_PARTIAL; }

static struct kbox_cgroup cgroup_with(enum kbox_mech mem, enum kbox_mech pids, enum kbox_mech cpu) {
  struct kbox_cgroup cg;
  memset(&cg, 0, sizeof(cg));
  cg.mech[KBOX_LIM_MEMORY] = mem;
  cg.mech[KBOX_LIM_PIDS] = pids;
  cg.mech[KBOX_LIM_CPU] = cpu;
  return cg;
}

Test(podstatus, rlimit_fallback_is_not_an_active_cgroup) {
  struct kbox_pod_status st;
  all_active(&st);
  struct kbox_achieved none = {0};
  struct kbox_cgroup cg = cgroup_with(KBOX_MECH_RLIMIT, KBOX_MECH_RLIMIT, KBOX_MECH_NONE);
  cg.why_not[KBOX_LIM_MEMORY] = "cannot create the sandbox cgroup X: Read-only file system; fix: delegate";
  kbox_pod_status_apply(&st, &none, &cg);
  cr_assert_not(active(&st, KBOX_PROT_CGROUP));
  json_t *j = kbox_pod_status_json(&st);
  const char *why = json_string_value(json_object_get(json_object_get(j, "missing"), "cgroup"));
  cr_assert(why != NULL && strstr(why, "Read-only file system") && !strstr(why, "fix:"), "%s", why);
  json_decref(j);
  /* no cgroup object at all */
  all_active(&st);
  kbox_pod_status_apply(&st, &none, NULL);
  cr_assert_not(active(&st, KBOX_PROT_CGROUP));
}

Test(podstatus, some_limits_by_cgroup_is_partial) {
  struct kbox_pod_status st;
  all_active(&st);
  struct kbox_achieved none = {0};
  struct kbox_cgroup cg = cgroup_with(KBOX_MECH_CGROUP1, KBOX_MECH_CGROUP1, KBOX_MECH_RLIMIT);
  kbox_pod_status_apply(&st, &none, &cg);
  cr_assert(active(&st, KBOX_PROT_CGROUP) && partial(&st, KBOX_PROT_CGROUP));
  cg = cgroup_with(KBOX_MECH_CGROUP2, KBOX_MECH_CGROUP2, KBOX_MECH_CGROUP2);
  all_active(&st);
  kbox_pod_status_apply(&st, &none, &cg);
  cr_assert(active(&st, KBOX_PROT_CGROUP) && !partial(&st, KBOX_PROT_CGROUP));
}

Test(podstatus, fallbacks_make_partial_and_require_refuses_them) {
  struct kbox_pod_status st;
  all_active(&st);
  struct kbox_achieved a = {0};
  kbox_achieved_note(&a, KBOX_STEP_HOSTNAME, "sethostname refused (%s)", "EPERM");
  kbox_achieved_note(&a, KBOX_STEP_SYSFS, "no /sys");
  struct kbox_cgroup cg = cgroup_with(KBOX_MECH_CGROUP2, KBOX_MECH_CGROUP2, KBOX_MECH_CGROUP2);
  kbox_pod_status_apply(&st, &a, &cg);
  cr_assert(partial(&st, KBOX_PROT_UTSNS));
  cr_assert_not(partial(&st, KBOX_PROT_MOUNTNS), "no /sys weakens nothing");
  char line[2048];
  kbox_pod_status_summary(&st, line, sizeof(line));
  cr_assert(strstr(line, "partial: utsns (sethostname refused (EPERM))") != NULL, "%s", line);
  cr_assert(strstr(line, "missing: none") != NULL, "%s", line);
  json_t *j = kbox_pod_status_json(&st);
  cr_assert_not_null(json_object_get(json_object_get(j, "fallbacks"), "sysfs"));
  cr_assert_null(json_object_get(json_object_get(j, "partial"), "mountns"));
  json_decref(j);
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_pod_status_check(&st, 1u << KBOX_PROT_PIDNS, &err), 0);
  cr_assert_eq(kbox_pod_status_check(&st, 1u << KBOX_PROT_UTSNS, &err), -1);
  cr_assert(strstr(err->msg, "utsns (partial: sethostname refused") != NULL, "%s", err->msg);
  kbox_error_free(&err);
}

Test(podstatus, required_protections_forbid_their_fallbacks) {
  uint32_t all = (1u << KBOX_STEP_N) - 1;
  cr_assert_eq(kbox_pod_status_fallbacks(0), all);
  uint32_t f = kbox_pod_status_fallbacks(1u << KBOX_PROT_UTSNS);
  cr_assert_eq(f & (1u << KBOX_STEP_HOSTNAME), 0);
  cr_assert_neq(f & (1u << KBOX_STEP_PROC), 0);
  f = kbox_pod_status_fallbacks((1u << KBOX_PROT_COUNT) - 1);
  cr_assert_eq(f & ((1u << KBOX_STEP_HOSTNAME) | (1u << KBOX_STEP_PROC)), 0);
  cr_assert_neq(f & (1u << KBOX_STEP_SYSFS), 0, "a missing /sys is less exposure: always allowed");
}

Test(podstatus, achieved_record_survives_the_channel_encoding) {
  struct kbox_achieved a = {0}, b;
  kbox_achieved_note(&a, KBOX_STEP_PROC, "line\nbreak %d", 1);
  kbox_achieved_note(&a, KBOX_STEP_IDMAP, "idmap");
  char text[1024];
  kbox_achieved_encode(&a, text, sizeof(text));
  kbox_achieved_decode(&b, a.degraded, text);
  cr_assert_eq(b.degraded, a.degraded);
  cr_assert_str_eq(b.why[KBOX_STEP_PROC], "line break 1");
  cr_assert_str_eq(b.why[KBOX_STEP_IDMAP], "idmap");
  cr_assert_str_eq(b.why[KBOX_STEP_HOSTNAME], "");
}
