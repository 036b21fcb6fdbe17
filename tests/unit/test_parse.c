/* Unit tests for value parsers, env files, --bind specs and bounded file reads. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spec/spec.h"
#include "testlib.h"
#include "util/envfile.h"
#include "util/fs.h"
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
  cr_assert_eq(s.sandbox.n_binds, 4);
  cr_assert(strcmp(s.sandbox.binds[0].dst, "/data") == 0 && !s.sandbox.binds[0].ro);
  cr_assert(strcmp(s.sandbox.binds[1].dst, "/mnt") == 0 && !s.sandbox.binds[1].ro);
  cr_assert(strcmp(s.sandbox.binds[2].dst, "/data") == 0 && s.sandbox.binds[2].ro);
  cr_assert(strcmp(s.sandbox.binds[3].dst, "/mnt") == 0 && s.sandbox.binds[3].ro);
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

Test(parse, plain_decimal_numbers_only) {
  kbox_error_t err = NULL;
  double d = 0;
  uint64_t v = 0;
  static const char *const bad[] = {"0x10", "1e3", "inf", "nan", "1.5.2", ".", "+1", " 1", "1 "};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(kbox_parse_double("--cpus", bad[i], 4096, &d, &err), -1, "--cpus '%s' accepted as %g", bad[i], d);
    cr_assert(strstr(err->msg, "--cpus") != NULL, "%s", err->msg);
    kbox_error_free(&err);
  }
  cr_assert_eq(kbox_parse_double("--cpus", ".5", 4096, &d, &err), 0);
  cr_assert_float_eq(d, 0.5, 1e-9);
  cr_assert_eq(kbox_parse_double("--cpus", "2.", 4096, &d, &err), 0);
  cr_assert_float_eq(d, 2.0, 1e-9);
  size_bad("0x10");
  size_bad("0x10M");
  size_bad("1e3M");
  size_bad("infG");
  cr_assert_eq(kbox_parse_size("--disk", ".5K", &v, &err), 0);
  cr_assert_eq(v, 512);
}

Test(parse, size_minimum_names_the_limit) {
  kbox_error_t err = NULL;
  uint64_t v = 0;
  cr_assert_eq(kbox_parse_size_min("--memory", "16M", 16u << 20, "why", &v, &err), 0);
  cr_assert_eq(v, 16u << 20);
  cr_assert_eq(kbox_parse_size_min("--memory", "0", 16u << 20, "setup needs it", &v, &err), -1);
  cr_assert(strstr(err->msg, "--memory") && strstr(err->msg, "16MiB") && strstr(err->msg, "setup needs it"), "%s", err->msg);
  kbox_error_free(&err);
  char buf[32];
  cr_assert_str_eq(kbox_human_size(1u << 20, buf, sizeof(buf)), "1MiB");
  cr_assert_str_eq(kbox_human_size(1000, buf, sizeof(buf)), "1000 bytes");
  cr_assert_str_eq(kbox_human_size(3ULL << 30, buf, sizeof(buf)), "3GiB");
}

Test(parse, hostnames) {
  kbox_error_t err = NULL;
  static const char *const good[] = {"a", "analysis", "job-42", "a.b.c", "x1.", "A-B"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    cr_assert_eq(kbox_validate_hostname("--hostname", good[i], &err), 0, "'%s' refused: %s", good[i], err ? err->msg : "");
  }
  static const char *const bad[] = {"", "a\nb", "-a", "a-", "a..b", ".a", "a b", "a_b", "h\033x",
                                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(kbox_validate_hostname("--hostname", bad[i], &err), -1, "'%s' accepted", bad[i]);
    cr_assert(strstr(err->msg, "--hostname") != NULL);
    cr_assert(strchr(err->msg, '\n') == NULL && strchr(err->msg, '\033') == NULL, "raw control character: %s", err->msg);
    kbox_error_free(&err);
  }
}

Test(parse, ip_addresses) {
  kbox_error_t err = NULL;
  static const char *const good[] = {"127.0.0.1", "0.0.0.0", "::1", "fe80::1", "10.1.2.3"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    cr_assert_eq(kbox_validate_ip("--ip", good[i], &err), 0, "'%s' refused", good[i]);
  static const char *const bad[] = {"not-an-ip", "", "localhost", "1.2.3", "127.0.0.1:80", "eth0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(kbox_validate_ip("--ip", bad[i], &err), -1, "'%s' accepted", bad[i]);
    cr_assert(strstr(err->msg, "--ip") != NULL && strstr(err->msg, bad[i]) != NULL, "%s", err->msg);
    kbox_error_free(&err);
  }
}

Test(parse, quote_escapes_control_characters) {
  char buf[64];
  cr_assert_str_eq(kbox_quote("plain-id", buf, sizeof(buf)), "plain-id");
  cr_assert_str_eq(kbox_quote("a\nb\tc\033d", buf, sizeof(buf)), "a\\nb\\tc\\x1bd");
  cr_assert_str_eq(kbox_quote("it's", buf, sizeof(buf)), "it\\'s");
  cr_assert_str_eq(kbox_quote("\xff", buf, sizeof(buf)), "\\xff");
  char small[8];
  cr_assert_str_eq(kbox_quote("abcdefghijkl", small, sizeof(small)), "abcd...");
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_validate_id("--id", "a\033[2Jb", &err), -1);
  cr_assert(strchr(err->msg, '\033') == NULL && strstr(err->msg, "\\x1b") != NULL, "%s", err->msg);
  kbox_error_free(&err);
}

Test(spec, bind_destinations_the_sandbox_mounts_are_refused) {
  struct kbox_spec s;
  kbox_spec_init(&s);
  kbox_error_t err = NULL;
  static const char *const bad[] = {"/etc:/proc", "/etc:/proc/sys", "/etc:/sys", "/etc:/dev", "/etc://dev/", "/etc:/dev/shm",
                                    "/etc:/run/kbox", "/etc:/run/./kbox/x", "/etc:/tmp", "/etc:/tmp/", "/etc:/etc/kbox/user-startup"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(kbox_spec_parse_bind(&s, bad[i], &err), -1, "'%s' accepted", bad[i]);
    cr_assert(strstr(err->msg, "--bind") != NULL, "%s", err->msg);
    kbox_error_free(&err);
  }
  cr_assert_eq(kbox_spec_parse_bind(&s, "/etc:/tmp/data", &err), 0);
  cr_assert_eq(kbox_spec_parse_bind(&s, "/etc://mnt//x/./y/", &err), 0);
  cr_assert_eq(kbox_spec_parse_bind(&s, "/etc:/processes", &err), 0, "a name that only starts like /proc");
  cr_assert_str_eq(s.sandbox.binds[0].dst, "/tmp/data");
  cr_assert_str_eq(s.sandbox.binds[1].dst, "/mnt/x/y");
  cr_assert_str_eq(s.sandbox.binds[2].dst, "/processes");
  kbox_spec_free(&s);
}

/* A FIFO with no writer is refused at once (no hang), and so is a device; a too large file names the limit. */
Test(fs, only_regular_files_are_read, .timeout = 20) {
  char dir[] = "/tmp/kbox-unit-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char fifo[64], big[64];
  snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
  snprintf(big, sizeof(big), "%s/big", dir);
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  kbox_error_t err = NULL;
  char *text = NULL;
  cr_assert_eq(kbox_read_file(fifo, 4096, &text, NULL, &err), -1);
  cr_assert(strstr(err->msg, fifo) != NULL && strstr(err->msg, "FIFO") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  cr_assert_eq(kbox_read_file("/dev/zero", 4096, &text, NULL, &err), -1);
  cr_assert(strstr(err->msg, "character device") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  cr_assert_eq(kbox_read_file(dir, 4096, &text, NULL, &err), -1);
  cr_assert(strstr(err->msg, "directory") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  char xs[5000];
  memset(xs, 'x', sizeof(xs));
  kt_write_data(big, xs, sizeof(xs));
  cr_assert_eq(kbox_read_file(big, 4096, &text, NULL, &err), -1);
  cr_assert(strstr(err->msg, "limit of 4KiB") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  size_t len = 0;
  cr_assert_eq(kbox_read_file(big, 8192, &text, &len, &err), 0);
  cr_assert_eq(len, 5000);
  free(text);
  unlink(fifo);
  unlink(big);
  rmdir(dir);
}

Test(envfile, nul_byte_is_an_error_naming_the_line) {
  char path[] = "/tmp/kbox-unit-env-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0 && write(fd, "A=1\nB=2\0C=3\n", 12) == 12);
  close(fd);
  struct kbox_strv env = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_envfile_load(path, &env, &err), -1, "a file with a NUL byte was accepted");
  cr_assert(strstr(err->msg, "--env-file") && strstr(err->msg, ":2:") && strstr(err->msg, "NUL"), "%s", err->msg);
  kbox_error_free(&err);
  kbox_strv_free(&env);
  unlink(path);
}

/* A pipe whose writer neither writes nor closes: the read gives up at its time limit, naming it. */
Test(fs, reads_of_pipes_are_bounded_in_time, .timeout = 20) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(write(p[1], "x = 1\n", 6), 6);
  kbox_error_t err = NULL;
  char *text = NULL;
  cr_assert_eq(kbox_read_fd_within(p[0], "standard input", 4096, 300, &text, NULL, &err), -1);
  cr_assert(strstr(err->msg, "standard input") && strstr(err->msg, "limit of 0.3 s"), "%s", err->msg);
  kbox_error_free(&err);
  close(p[1]);
  cr_assert_eq(kbox_read_fd_within(p[0], "standard input", 4096, 300, &text, NULL, &err), 0, "EOF within the limit");
  free(text);
  close(p[0]);
}
