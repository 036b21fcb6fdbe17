/* The escape battery (tests/security/escape.c) run as the workload of `kbox run`, as root and
   rootless: every attempt must be refused, and the workload's privilege state must be empty. */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static char escape_path[4096];

static const char *escape_bin(void) {
  snprintf(escape_path, sizeof(escape_path), "%s/tests/security/escape", getenv("KBOX_BUILD_ROOT"));
  return escape_path;
}

/* A process on the host, as uid, that kill(-1) from the sandbox must not reach (SIGUSR2 kills it). */
static pid_t host_sleeper(int uid) {
  pid_t pid = fork();
  if (pid == 0) {
    if (uid >= 0 && (setgroups(0, NULL) < 0 || setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
                     setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0))
      _exit(99);
    execl("/bin/sleep", "sleep", "300", (char *)NULL);
    _exit(98);
  }
  return pid;
}

/* A root filesystem holding only the static battery (readable by everyone). */
static char *battery_rootfs(void) {
  char *dir = kt_tmpdir();
  char dst[4200], cmd[12800];
  snprintf(dst, sizeof(dst), "%s/escape", dir);
  snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 755 '%s'", escape_bin(), dst, dst);
  cr_assert_eq(system(cmd), 0, "copying the battery");
  return dir;
}

/* Check every line of the battery's output; returns the number of attempts. */
static int check_battery(const struct kt_result *r) {
  int attempts = 0;
  char *copy = strdup(r->out);
  for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "attempt=", 8) != 0) continue;
    attempts++;
    cr_expect(strstr(line, " result=denied") != NULL, "not refused: %s", line);
  }
  free(copy);
  static const char *const zero[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
  for (int i = 0; i < 5; i++) {
    const char *v = kt_field(r->out, zero[i]);
    cr_assert_not_null(v, "no %s line in:\n%s", zero[i], r->out);
    cr_expect_str_eq(v, "0000000000000000", "%s", zero[i]);
  }
  cr_expect_str_eq(kt_field(r->out, "NoNewPrivs") ? kt_field(r->out, "NoNewPrivs") : "?", "1");
  cr_expect_str_eq(kt_field(r->out, "Seccomp") ? kt_field(r->out, "Seccomp") : "?", "2");
  cr_expect_str_eq(kt_field(r->out, "pid1_alive") ? kt_field(r->out, "pid1_alive") : "?", "yes");
  cr_expect_str_eq(kt_field(r->out, "uid") ? kt_field(r->out, "uid") : "?", "1000 gid=100");
  return attempts;
}

/* Run the battery in a sandbox as uid (-1: as we are), with a host sleeper of the same uid. */
static void run_battery(char *const argv[], int uid) {
  pid_t sleeper = host_sleeper(uid);
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, uid, 180, &r), 0);
  cr_log_info("battery output:\n%s\nstderr:\n%s", r.out, r.err);
  int attempts = check_battery(&r);
  cr_expect_geq(attempts, 40, "only %d attempts ran (stderr: %s)", attempts, r.err);
  cr_expect_eq(r.exit_code, 0, "battery exit %d; stderr: %s", r.exit_code, r.err);
  cr_expect(strstr(r.out, "attempt=kill_minus_1 result=denied") != NULL);
  int st = 0;
  cr_expect_eq(waitpid(sleeper, &st, WNOHANG), 0, "the host process was reached from the sandbox (status %d)", st);
  kill(sleeper, SIGKILL);
  waitpid(sleeper, &st, 0);
  kt_result_free(&r);
}

Test(escape, root_battery_with_host_rootfs) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (the rootless variant runs separately)");
  char bind[4200];
  snprintf(bind, sizeof(bind), "%s:/escape:ro", escape_bin());
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--bind", bind, "--", "/escape", NULL};
  run_battery(argv, -1);
}

Test(escape, rootless_battery) {
  if (!kt_is_root()) kt_skip_or_fail("needs root to switch to uid 65534 for the rootless run");
  if (!kt_userns_works(KT_NOBODY)) kt_skip_or_fail("unprivileged user namespaces are refused on this host");
  char *root = battery_rootfs();
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", root, "--", "/escape", NULL};
  run_battery(argv, KT_NOBODY);
  kt_rmrf(root);
  free(root);
}

Test(escape, strict_profile_battery) {
  if (!kt_is_root()) kt_skip_or_fail("needs root");
  char *root = battery_rootfs();
  char *argv[] = {(char *)kt_kbox(), "run", "--profile", "strict", "--rootfs", root, "--", "/escape", NULL};
  run_battery(argv, -1);
  kt_rmrf(root);
  free(root);
}

/* The battery can fail: without the filter, attempts that only seccomp stops get through. */
Test(escape, unconfined_is_caught_and_warned) {
  if (!kt_is_root()) kt_skip_or_fail("needs root");
  char *root = battery_rootfs();
  char *argv[] = {(char *)kt_kbox(), "run", "--seccomp=unconfined", "--rootfs", root, "--", "/escape", NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, -1, 180, &r), 0);
  cr_expect(strstr(r.err, "--seccomp=unconfined") != NULL && strstr(r.err, "WITHOUT a seccomp filter") != NULL,
            "no warning: %s", r.err);
  cr_expect_str_eq(kt_field(r.out, "Seccomp") ? kt_field(r.out, "Seccomp") : "?", "0");
  cr_expect(strstr(r.out, "attempt=adjtimex result=ALLOWED") != NULL, "battery missed an allowed adjtimex:\n%s", r.out);
  cr_expect_neq(r.exit_code, 0);
  /* capabilities and pid 1 protections hold without seccomp too */
  cr_expect(strstr(r.out, "attempt=proc1_mem_read result=denied") != NULL);
  cr_expect(strstr(r.out, "attempt=mount result=denied") != NULL);
  kt_result_free(&r);
  kt_rmrf(root);
  free(root);
}
