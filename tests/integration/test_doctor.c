/* `kbox doctor`: its verdicts must match what this host really allows. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include "testlib.h"

/* The "ok" value of the named check in doctor's JSON. */
static bool check_ok(json_t *doc, const char *name) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(doc, "checks"), i, c) {
    if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0) return json_is_true(json_object_get(c, "ok"));
  }
  cr_assert_fail("doctor has no check named '%s'", name);
  return false;
}

Test(doctor, json_matches_the_host) {
  struct kt_result r;
  char *argv[] = {(char *)kt_kbox(), "doctor", "--json", NULL};
  cr_assert(kt_run(argv, NULL, -1, 60, &r) == 0);
  json_error_t jerr;
  json_t *doc = json_loads(r.out, 0, &jerr);
  cr_assert(doc != NULL, "doctor --json printed no JSON: %s (%s)", jerr.text, r.out);
  cr_assert_eq(check_ok(doc, "user namespaces"), kt_userns_works(-1));
  cr_assert_eq(check_ok(doc, "unprivileged user namespaces"), kt_userns_works(KT_NOBODY));
  bool full = json_is_true(json_object_get(doc, "full_isolation"));
  cr_assert_eq(r.exit_code, full ? 0 : 1, "exit code must follow full_isolation");
  /* The cgroup line names the mode we can see ourselves. */
  struct statfs fs;
  size_t i;
  json_t *c;
  const char *detail = NULL;
  json_array_foreach(json_object_get(doc, "checks"), i, c)
    if (strcmp(json_string_value(json_object_get(c, "name")), "cgroups") == 0) detail = json_string_value(json_object_get(c, "detail"));
  cr_assert(detail != NULL);
  if (statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
    cr_assert(strstr(detail, "v2") != NULL, "cgroup detail: %s", detail);
  else if (statfs("/sys/fs/cgroup/unified", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
    cr_assert(strstr(detail, "hybrid") != NULL, "cgroup detail: %s", detail);
  json_decref(doc);
  kt_result_free(&r);
}

Test(doctor, text_output_and_bad_option) {
  struct kt_result r;
  char *argv[] = {(char *)kt_kbox(), "doctor", NULL};
  cr_assert(kt_run(argv, NULL, -1, 60, &r) == 0);
  cr_assert(strstr(r.out, "user namespaces") != NULL && strstr(r.out, "overlayfs") != NULL, "%s", r.out);
  kt_result_free(&r);
  char *bad[] = {(char *)kt_kbox(), "doctor", "--bogus", NULL};
  cr_assert(kt_run(bad, NULL, -1, 60, &r) == 0);
  cr_assert_eq(r.exit_code, 125);
  cr_assert(strstr(r.err, "--bogus") != NULL);
  kt_result_free(&r);
}
