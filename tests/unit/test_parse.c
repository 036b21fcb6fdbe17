/* Unit tests for value parsers, env files and --bind specs. */
#include <criterion/criterion.h>
#include <string.h>

#include "sandbox/spec.h"
#include "util/envfile.h"
#include "util/parse.h"

static uint64_t size_ok(const char *s) {
  kbox_error_t err = NULL;
  uint64_t v = 0;
  cr_assert_eq(kbox_parse_size("--disk", s, &v, &err), 0, "'%s' rejected: %s", s, err ? err->msg : "");
  return v;
}

static void size_bad(const char *s) {
  kbox_error_t err = NULL;
  uint64_t v = 0;
  cr_assert_eq(kbox_parse_size("--disk", s, &v, &err), -1, "'%s' accepted as %llu", s, (unsigned long long)v);
  cr_assert(strstr(err->msg, "--disk") != NULL, "error does not name the option: %s", err->msg);
  kbox_error_free(&err);
}

Test(parse, sizes) {
  cr_assert_eq(size_ok("4096"), 4096);
  cr_assert_eq(size_ok("64k"), 64 * 1024);
  cr_assert_eq(size_ok("512M"), 512ULL << 20);
  cr_assert_eq(size_ok("1G"), 1ULL << 30);
  cr_assert_eq(size_ok("1GiB"), 1ULL << 30);
  cr_assert_eq(size_ok("1.5g"), 3ULL << 29);
  cr_assert_eq(size_ok("2T"), 2ULL << 40);
  size_bad("12X");
  size_bad("");
  size_bad("-1G");
  size_bad("G");
  size_bad("1GG");
  size_bad("99999999999999999999T");
}

Test(parse, numbers_and_seconds) {
  kbox_error_t err = NULL;
  uint64_t v = 0;
  cr_assert_eq(kbox_parse_uint("--pids", "32", 1, 100, &v, &err), 0);
  cr_assert_eq(v, 32);
  cr_assert_eq(kbox_parse_uint("--pids", "0", 1, 100, &v, &err), -1);
  cr_assert(strstr(err->msg, "out of range") != NULL);
  kbox_error_free(&err);
  cr_assert_eq(kbox_parse_uint("--pids", "12abc", 1, 100, &v, &err), -1);
  kbox_error_free(&err);
  cr_assert_eq(kbox_parse_seconds("--timeout", "1.5", &v, &err), 0);
  cr_assert_eq(v, 1500);
  cr_assert_eq(kbox_parse_seconds("--timeout", "0", &v, &err), -1);
  kbox_error_free(&err);
  cr_assert_eq(kbox_parse_seconds("--timeout", "soon", &v, &err), -1);
  kbox_error_free(&err);
  double d = 0;
  cr_assert_eq(kbox_parse_double("--cpus", "0.5", 64, &d, &err), 0);
  cr_assert_float_eq(d, 0.5, 1e-9);
  cr_assert_eq(kbox_parse_double("--cpus", "nan", 64, &d, &err), -1);
  kbox_error_free(&err);
}

Test(parse, user_id_and_ports) {
  kbox_error_t err = NULL;
  uid_t u = 0;
  gid_t g = 100;
  cr_assert_eq(kbox_parse_user("--user", "1234", &u, &g, &err), 0);
  cr_assert_eq(u, 1234);
  cr_assert_eq(g, 100, "gid keeps its default when not given");
  cr_assert_eq(kbox_parse_user("--user", "1:2", &u, &g, &err), 0);
  cr_assert(u == 1 && g == 2);
  cr_assert_eq(kbox_parse_user("--user", "jovyan", &u, &g, &err), -1);
  kbox_error_free(&err);
  cr_assert_eq(kbox_parse_user("--user", "70000", &u, &g, &err), -1);
  kbox_error_free(&err);
  cr_assert_eq(kbox_validate_id("--id", "job-42.a_b", &err), 0);
  static const char *const bad_ids[] = {"", "../x", "a/b", "-lead", ".hidden", "has space"};
  for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
    cr_assert_eq(kbox_validate_id("--id", bad_ids[i], &err), -1, "id '%s' accepted", bad_ids[i]);
    kbox_error_free(&err);
  }
  unsigned lo = 0, hi = 0;
  cr_assert_eq(kbox_parse_port_range("--port-range", "9000..9100", &lo, &hi, &err), 0);
  cr_assert(lo == 9000 && hi == 9100);
  cr_assert_eq(kbox_parse_port_range("--port-range", "9100..9000", &lo, &hi, &err), -1);
  kbox_error_free(&err);
  cr_assert_eq(kbox_parse_port_range("--port-range", "9000-9100", &lo, &hi, &err), -1);
  kbox_error_free(&err);
}

Test(envfile, dotenv_forms) {
  struct kbox_strv env = {0};
  kbox_error_t err = NULL;
  const char *text = "# comment\n\nexport A=1\nB = spaced \nC=\"quoted # not comment\\n2\"\n"
                     "D='single $x'\nE=value # comment\nF=\r\nA=override\n";
  cr_assert_eq(kbox_envfile_parse("t.env", text, &env, &err), 0, "%s", err ? err->msg : "");
  cr_assert_str_eq(kbox_strv_getenv(&env, "A"), "override");
  cr_assert_str_eq(kbox_strv_getenv(&env, "B"), "spaced");
  cr_assert_str_eq(kbox_strv_getenv(&env, "C"), "quoted # not comment\n2");
  cr_assert_str_eq(kbox_strv_getenv(&env, "D"), "single $x");
  cr_assert_str_eq(kbox_strv_getenv(&env, "E"), "value");
  cr_assert_str_eq(kbox_strv_getenv(&env, "F"), "");
  cr_assert_eq(env.n, 6);
  kbox_strv_free(&env);
}

static void envfile_bad(const char *text, const char *needle) {
  struct kbox_strv env = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_envfile_parse("bad.env", text, &env, &err), -1, "accepted: %s", text);
  cr_assert(strstr(err->msg, needle) != NULL, "'%s' lacks '%s'", err->msg, needle);
  kbox_error_free(&err);
  kbox_strv_free(&env);
}

Test(envfile, malformed_lines_are_named) {
  envfile_bad("A=1\nno equals here\n", "bad.env:2");
  envfile_bad("1A=x\n", "not a valid variable name");
  envfile_bad("A=\"unterminated\n", "unterminated double quote");
  envfile_bad("A='x\n", "unterminated single quote");
  envfile_bad("A=\"x\" junk\n", "unexpected text");
  envfile_bad("=x\n", "bad.env:1");
}

Test(envfile, env_assignments) {
  struct kbox_strv env = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_env_parse_assignment("--env", "K=a=b", &env, &err), 0);
  cr_assert_str_eq(kbox_strv_getenv(&env, "K"), "a=b");
  cr_assert_eq(kbox_env_parse_assignment("--env", "K", &env, &err), -1);
  kbox_error_free(&err);
  cr_assert_eq(kbox_env_parse_assignment("--env", "BAD-NAME=1", &env, &err), -1);
  kbox_error_free(&err);
  kbox_strv_free(&env);
}

Test(spec, bind_specs) {
  struct kbox_spec s;
  kbox_spec_init(&s);
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_spec_parse_bind(&s, "/data", &err), 0);
  cr_assert_eq(kbox_spec_parse_bind(&s, "/data:/mnt", &err), 0);
  cr_assert_eq(kbox_spec_parse_bind(&s, "/data:ro", &err), 0);
  cr_assert_eq(kbox_spec_parse_bind(&s, "/data:/mnt:ro", &err), 0);
  cr_assert_eq(s.n_binds, 4);
  cr_assert(strcmp(s.binds[0].dst, "/data") == 0 && !s.binds[0].ro);
  cr_assert(strcmp(s.binds[1].dst, "/mnt") == 0 && !s.binds[1].ro);
  cr_assert(strcmp(s.binds[2].dst, "/data") == 0 && s.binds[2].ro);
  cr_assert(strcmp(s.binds[3].dst, "/mnt") == 0 && s.binds[3].ro);
  static const char *const bad[] = {"data", "/a:/b:rx", "/a:b", "/a:/b:ro:x", ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(kbox_spec_parse_bind(&s, bad[i], &err), -1, "'%s' accepted", bad[i]);
    cr_assert(strstr(err->msg, "--bind") != NULL);
    kbox_error_free(&err);
  }
  kbox_spec_free(&s);
}

Test(error, prefix_and_hint) {
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_error_make(&err, 2, "open %s", "x"), -1);
  kbox_error_prefix(&err, "step");
  kbox_error_hint(&err, "do %s", "this");
  cr_assert_str_eq(err->msg, "step: open x: No such file or directory; fix: do this");
  cr_assert_eq(err->exit_code, 125);
  kbox_error_free(&err);
  cr_assert_null(err);
}
