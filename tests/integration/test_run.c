/* Integration tests of `kbox run` (issue 2): each runs the probe helper INSIDE the sandbox and asserts
   on what it saw, as root and as an unprivileged user. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

static const char *field(struct kt_result *r, const char *key) {
  const char *v = kt_field(r->out, key);
  cr_assert(v != NULL, "probe printed no %s; stdout:\n%s\nstderr:\n%s", key, r->out, r->err);
  return v;
}

FX_BOTH(run, pid_namespace_hides_host) {
  struct kt_result r;
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "info"), &r);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  cr_assert_str_eq(field(&r, "ppid"), "1");
  /* Only the sandbox's pid 1 and the probe itself exist in its pid namespace. */
  cr_assert_str_eq(field(&r, "visible_pids"), "2");
  cr_assert_str_eq(field(&r, "uid"), "1000");
  cr_assert_str_eq(field(&r, "gid"), "100");
  kt_result_free(&r);
}

FX_BOTH(run, hostname_is_set) {
  struct kt_result r;
  fx_run(uid, FX_ARGS("--hostname", "analysis-box"), FX_ARGS("/probe", "info"), &r);
  cr_assert_str_eq(field(&r, "hostname"), "analysis-box");
  kt_result_free(&r);
  fx_run(uid, FX_ARGS("--id", "idashost"), FX_ARGS("/probe", "info"), &r);
  cr_assert_str_eq(field(&r, "hostname"), "idashost", "default hostname is the sandbox id");
  kt_result_free(&r);
}

FX_BOTH(run, only_loopback_network) {
  struct kt_result r;
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "info", "loopback", "outside", "192.0.2.1"), &r);
  cr_assert_str_eq(field(&r, "ifaces"), "lo:up");
  cr_assert_str_eq(field(&r, "loopback_tcp"), "ok");
  cr_assert_str_eq(field(&r, "outside_tcp"), "Network is unreachable");
  kt_result_free(&r);
}

FX_BOTH(run, host_files_outside_shared_paths_are_invisible) {
  char *dir = kt_tmpdir();
  char marker[512];
  snprintf(marker, sizeof(marker), "%s/marker", dir);
  kt_write_file(marker, "secret");
  struct kt_result r;
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "exists", marker, "exists", "/probe"), &r);
  char key[600];
  snprintf(key, sizeof(key), "exists:%s", marker);
  cr_assert_str_eq(field(&r, key), "0", "a host file outside the shared paths is visible");
  cr_assert_str_eq(field(&r, "exists:/probe"), "1");
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

FX_BOTH(run, rootfs_writes_stay_in_the_upper_layer) {
  struct kt_result r;
  char host_probe[512], host_new[512];
  snprintf(host_probe, sizeof(host_probe), "%s/probe", fx_rootfs_as(uid));
  snprintf(host_new, sizeof(host_new), "%s/scratch/new", fx_rootfs_as(uid));
  struct stat before, after;
  cr_assert(stat(host_probe, &before) == 0);
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "write", "/scratch/new", "write", "/tmp/t", "write", "/home/jovyan/h",
                               "write", "/bin/sh", "exists", "/scratch/new"), &r);
  cr_assert_str_eq(field(&r, "write:/scratch/new"), "ok");
  cr_assert_str_eq(field(&r, "write:/tmp/t"), "ok");
  cr_assert_str_eq(field(&r, "write:/home/jovyan/h"), "ok", "HOME must be writable");
  kt_result_free(&r);
  cr_assert(access(host_new, F_OK) != 0, "a write inside reached the rootfs directory on the host");
  cr_assert(stat(host_probe, &after) == 0 && after.st_size == before.st_size && after.st_mtime == before.st_mtime,
            "the rootfs on the host changed");
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "exists", "/scratch/new", "exists", "/tmp/t", "exists", "/home/jovyan/h"), &r);
  cr_assert_str_eq(field(&r, "exists:/scratch/new"), "0", "writes outside the workdir survived the sandbox");
  cr_assert_str_eq(field(&r, "exists:/tmp/t"), "0");
  cr_assert_str_eq(field(&r, "exists:/home/jovyan/h"), "0");
  kt_result_free(&r);
}

Test(run_root, rootfs_owned_by_root_stays_root_owned_inside, .fini = fx_cleanup) {
  fx_require(-1);
  struct kt_result r;
  /* The workload (uid 1000) may not modify root-owned rootfs files, even in its upper layer. */
  fx_run(-1, FX_NONE, FX_ARGS("/probe", "write", "/probe", "write", "/etc/passwd"), &r);
  cr_assert_str_eq(field(&r, "write:/probe"), "denied:Permission denied");
  cr_assert_str_eq(field(&r, "write:/etc/passwd"), "denied:Permission denied");
  kt_result_free(&r);
}

FX_BOTH(run, workdir_is_shared_with_the_owner) {
  char *dir = kt_tmpdir();
  uid_t owner = uid >= 0 ? (uid_t)uid : 4242;
  cr_assert(chown(dir, owner, owner) == 0);
  struct kt_result r;
  fx_run(uid, FX_ARGS("--workdir", dir), FX_ARGS("/probe", "info", "write", "out.txt"), &r);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  cr_assert_str_eq(field(&r, "cwd"), dir, "the workdir is the cwd, at the same path");
  cr_assert_str_eq(field(&r, "write:out.txt"), "ok");
  char path[512];
  snprintf(path, sizeof(path), "%s/out.txt", dir);
  struct stat st;
  cr_assert(stat(path, &st) == 0, "the workdir write is not on the host");
  cr_assert_eq(st.st_uid, owner, "file owned by %u on the host, expected the workdir owner %u", st.st_uid, owner);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

FX_BOTH(run, bind_read_only) {
  char *dir = kt_tmpdir();
  char spec[600];
  snprintf(spec, sizeof(spec), "%s:/data:ro", dir);
  struct kt_result r;
  fx_run(uid, FX_ARGS("--bind", spec), FX_ARGS("/probe", "write", "/data/x", "ls", "/data"), &r);
  cr_assert_str_eq(field(&r, "write:/data/x"), "denied:Read-only file system");
  cr_assert_str_eq(field(&r, "ls:/data"), "0");
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

FX_BOTH(run, proc_and_sys_are_masked) {
  struct kt_result r;
  fx_run(uid, FX_NONE,
         FX_ARGS("/probe", "read", "/proc/keys", "read", "/proc/timer_list", "ls", "/proc/acpi", "ls", "/sys/firmware",
                 "write", "/proc/sysrq-trigger", "write", "/proc/sys/kernel/core_pattern", "read", "/proc/self/status"),
         &r);
  cr_assert_str_eq(field(&r, "read:/proc/keys"), "0", "/proc/keys is readable");
  cr_assert_str_eq(field(&r, "read:/proc/timer_list"), "0");
  const char *acpi = kt_field(r.out, "ls:/proc/acpi");
  cr_assert(acpi == NULL || strcmp(acpi, "0") == 0 || strncmp(acpi, "denied", 6) == 0, "/proc/acpi shows %s entries", acpi);
  const char *fw = field(&r, "ls:/sys/firmware");
  cr_assert(strcmp(fw, "0") == 0 || strncmp(fw, "denied", 6) == 0, "/sys/firmware shows %s entries", fw);
  cr_assert_str_neq(field(&r, "write:/proc/sysrq-trigger"), "ok");
  cr_assert_str_neq(field(&r, "write:/proc/sys/kernel/core_pattern"), "ok");
  cr_assert_str_neq(field(&r, "read:/proc/self/status"), "0", "/proc itself must still work");
  kt_result_free(&r);
}

FX_BOTH(run, environment_does_not_leak) {
  struct kt_result r;
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", (char *)fx_rootfs(), "--env", "GREETING=hello", "--",
                  "/probe", "env", "KBOX_TEST_SECRET", "env", "GREETING", "env", "PATH", "env", "HOME", NULL};
  char *extra[] = {"KBOX_TEST_SECRET=sk-live-123", NULL};
  cr_assert(kt_run(argv, extra, uid, 60, &r) == 0);
  cr_assert_str_eq(field(&r, "env:KBOX_TEST_SECRET"), "<unset>", "kbox's environment leaked into the sandbox");
  cr_assert_str_eq(field(&r, "env:GREETING"), "hello");
  cr_assert_str_eq(field(&r, "env:HOME"), "/home/jovyan");
  cr_assert(strstr(field(&r, "env:PATH"), "/usr/bin") != NULL);
  kt_result_free(&r);
}

FX_BOTH(run, env_file_is_read) {
  char *dir = kt_tmpdir();
  char path[512];
  snprintf(path, sizeof(path), "%s/sandbox.env", dir);
  kt_write_file(path, "# comment\nexport A=1\nB=\"two words\"\nC='x#y' # trailing\n");
  struct kt_result r;
  fx_run(uid, FX_ARGS("--env-file", path), FX_ARGS("/probe", "env", "A", "env", "B", "env", "C"), &r);
  cr_assert_str_eq(field(&r, "env:A"), "1");
  cr_assert_str_eq(field(&r, "env:B"), "two words");
  cr_assert_str_eq(field(&r, "env:C"), "x#y");
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

FX_BOTH(run, exit_codes_propagate) {
  struct kt_result r;
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "exit", "42"), &r);
  cr_assert_eq(r.exit_code, 42);
  kt_result_free(&r);
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "kill", "9"), &r);
  cr_assert_eq(r.exit_code, 128 + 9, "killed by SIGKILL must give 137, got %d", r.exit_code);
  kt_result_free(&r);
  fx_run(uid, FX_NONE, FX_ARGS("/no/such/cmd"), &r);
  cr_assert_eq(r.exit_code, 127, "stderr: %s", r.err);
  cr_assert(strstr(r.err, "/no/such/cmd") != NULL);
  kt_result_free(&r);
  fx_run(uid, FX_NONE, FX_ARGS("notacommand"), &r);
  cr_assert_eq(r.exit_code, 127);
  cr_assert(strstr(r.err, "command not found") != NULL, "stderr: %s", r.err);
  kt_result_free(&r);
  fx_run(uid, FX_NONE, FX_ARGS("/notexec"), &r);
  cr_assert_eq(r.exit_code, 126, "a non-executable file must give 126; stderr: %s", r.err);
  kt_result_free(&r);
}

FX_BOTH(run, signals_are_forwarded) {
  int fd;
  pid_t pid = fx_spawn(uid, FX_NONE, FX_ARGS("/probe", "trap"), &fd);
  cr_assert(fx_wait_line(fd, "trapping", 20), "the workload did not start");
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
  close(fd);
  cr_assert(WIFEXITED(st));
  cr_assert_eq(WEXITSTATUS(st), 100 + SIGTERM, "SIGTERM did not reach the workload (exit %d)", WEXITSTATUS(st));
}

FX_BOTH(run, timeout_kills_and_reports) {
  char *dir = kt_tmpdir();
  char report[512];
  snprintf(report, sizeof(report), "%s/verdict.json", dir);
  if (uid >= 0) cr_assert(chown(dir, (uid_t)uid, (gid_t)uid) == 0);
  struct kt_result r;
  fx_run(uid, FX_ARGS("--timeout", "1", "--report", report), FX_ARGS("/probe", "sleep", "30"), &r);
  cr_assert_eq(r.exit_code, 124, "stderr: %s", r.err);
  cr_assert(strstr(r.err, "--timeout") != NULL, "no one-line reason on stderr: %s", r.err);
  char *text = NULL;
  size_t len = 0;
  FILE *f = fopen(report, "r");
  cr_assert(f != NULL, "no report written");
  cr_assert(getdelim(&text, &len, '\0', f) > 0);
  fclose(f);
  cr_assert(strstr(text, "\"timed_out\": true") != NULL, "report: %s", text);
  cr_assert(strstr(text, "\"exit_code\": 124") != NULL, "report: %s", text);
  free(text);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

/* Host mount table lines that belong to a kbox sandbox (its tmpfs/overlay sources or the test rootfs). */
static int sandbox_mounts_on_host(void) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof(line), f) != NULL)
    n += strstr(line, " - tmpfs kbox") != NULL || strstr(line, "kbox-dev") != NULL ||
         strstr(line, " - overlay overlay") != NULL || strstr(line, fx_rootfs()) != NULL;
  fclose(f);
  return n;
}

FX_BOTH(run, sigkill_of_kbox_leaves_nothing) {
  int mounts_before = sandbox_mounts_on_host();
  int fd;
  pid_t pid = fx_spawn(uid, FX_NONE, FX_ARGS("/probe", "ready", "sleep", "60"), &fd);
  cr_assert(fx_wait_line(fd, "ready", 20), "the workload did not start");
  pid_t kids[64];
  int n = fx_descendants(pid, kids, 64);
  cr_assert_geq(n, 2, "expected the sandbox's pid 1 and the workload, found %d", n);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  close(fd);
  int alive = n;
  for (int tries = 0; tries < 100 && alive > 0; tries++) {
    alive = 0;
    for (int i = 0; i < n; i++) alive += kill(kids[i], 0) == 0 || errno != ESRCH;
    if (alive) usleep(50000);
  }
  cr_assert_eq(alive, 0, "%d sandbox processes survived kbox's SIGKILL", alive);
  cr_assert_eq(sandbox_mounts_on_host(), mounts_before, "sandbox mounts appeared in the host's mount table");
}

FX_BOTH(run, duplicate_id_is_refused) {
  int fd;
  pid_t pid = fx_spawn(uid, FX_ARGS("--id", "dup-test"), FX_ARGS("/probe", "ready", "sleep", "60"), &fd);
  cr_assert(fx_wait_line(fd, "ready", 20));
  struct kt_result r;
  fx_run(uid, FX_ARGS("--id", "dup-test"), FX_ARGS("/probe", "info"), &r);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  close(fd);
  cr_assert_eq(r.exit_code, 125);
  cr_assert(strstr(r.err, "already running") != NULL, "stderr: %s", r.err);
  cr_assert(strstr(r.out, "pid=") == NULL, "the second sandbox started anyway");
  kt_result_free(&r);
}

/* Bad input: one clear line naming the option, exit 125, and nothing starts. */
static void expect_bad(const char *const *opts, const char *const *cmd, const char *needle) {
  struct kt_result r;
  fx_run(-1, opts, cmd, &r);
  cr_assert_eq(r.exit_code, 125, "exit %d for bad input (%s); stderr: %s", r.exit_code, needle, r.err);
  cr_assert(strstr(r.err, needle) != NULL, "stderr lacks '%s': %s", needle, r.err);
  cr_assert(strstr(r.out, "pid=") == NULL, "the sandbox started despite bad input");
  kt_result_free(&r);
}

Test(run_bad_input, errors_name_the_problem, .fini = fx_cleanup) {
  const char *const *probe = FX_ARGS("/probe", "info");
  expect_bad(FX_ARGS("--frobnicate"), probe, "unknown option '--frobnicate'");
  expect_bad(FX_ARGS("--disk", "12X"), probe, "--disk");
  expect_bad(FX_ARGS("--memory", "lots"), probe, "--memory");
  expect_bad(FX_ARGS("--rootfs", "/no/such/rootfs"), probe, "--rootfs: /no/such/rootfs");
  expect_bad(FX_ARGS("--workdir", "/no/such/workdir"), probe, "--workdir");
  expect_bad(FX_ARGS("--env-file", "/no/such/file.env"), probe, "--env-file");
  expect_bad(FX_ARGS("--env", "NOEQUALS"), probe, "--env");
  expect_bad(FX_ARGS("--id", "../etc"), probe, "--id");
  expect_bad(FX_ARGS("--bind", "relative:/x"), probe, "--bind");
  expect_bad(FX_ARGS("--bind", "/no/such/src:/x"), probe, "--bind");
  expect_bad(FX_ARGS("--timeout", "soon"), probe, "--timeout");
  expect_bad(FX_ARGS("--user", "root"), probe, "--user");
  expect_bad(FX_ARGS("--net", "host"), probe, "--net");
}

Test(run_bad_input, unreadable_env_file, .fini = fx_cleanup) {
  if (!kt_is_root()) kt_skip_or_fail("needs root to switch users");
  char *dir = kt_tmpdir();
  char path[512];
  snprintf(path, sizeof(path), "%s/secret.env", dir);
  kt_write_file(path, "A=1\n");
  chmod(path, 0600);
  struct kt_result r;
  fx_run(KT_NOBODY, FX_ARGS("--env-file", path), FX_ARGS("/probe", "info"), &r);
  cr_assert_eq(r.exit_code, 125);
  cr_assert(strstr(r.err, "--env-file") != NULL && strstr(r.err, "Permission denied") != NULL, "stderr: %s", r.err);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

Test(run_bad_input, malformed_env_file_names_the_line, .fini = fx_cleanup) {
  char *dir = kt_tmpdir();
  char path[512];
  snprintf(path, sizeof(path), "%s/bad.env", dir);
  kt_write_file(path, "A=1\nthis line is wrong\n");
  struct kt_result r;
  fx_run(-1, FX_ARGS("--env-file", path), FX_ARGS("/probe", "info"), &r);
  cr_assert_eq(r.exit_code, 125);
  char needle[600];
  snprintf(needle, sizeof(needle), "%s:2", path);
  cr_assert(strstr(r.err, needle) != NULL, "stderr: %s", r.err);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

Test(run_bad_input, rootfs_without_the_command, .fini = fx_cleanup) {
  fx_require(-1);
  struct kt_result r;
  fx_run(-1, FX_NONE, FX_ARGS("python3", "-c", "1"), &r);
  cr_assert_eq(r.exit_code, 127);
  cr_assert(strstr(r.err, "python3") != NULL, "stderr: %s", r.err);
  kt_result_free(&r);
}

Test(run_cli, help_and_version) {
  struct kt_result r;
  char *v1[] = {(char *)kt_kbox(), "--version", NULL};
  cr_assert(kt_run(v1, NULL, -1, 10, &r) == 0);
  cr_assert_eq(r.exit_code, 0);
  cr_assert(strncmp(r.out, "kbox ", 5) == 0);
  kt_result_free(&r);
  char *v2[] = {(char *)kt_kbox(), "run", "--help", NULL};
  cr_assert(kt_run(v2, NULL, -1, 10, &r) == 0);
  cr_assert_eq(r.exit_code, 0);
  static const char *const documented[] = {"--rootfs", "--disk", "--workdir", "--bind", "--net", "--env", "--env-file",
                                           "--user", "--hostname", "--id", "--timeout", "--report", "Example"};
  for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
    cr_assert(strstr(r.out, documented[i]) != NULL, "run --help does not explain %s", documented[i]);
  kt_result_free(&r);
}

Test(run_root, report_of_a_failed_start_has_kboxs_exit_code, .fini = fx_cleanup) {
  fx_require(-1);
  char *dir = kt_tmpdir();
  char report[512];
  snprintf(report, sizeof(report), "%s/verdict.json", dir);
  struct kt_result r;
  fx_run(-1, FX_ARGS("--report", report), FX_ARGS("/no/such/cmd"), &r);
  cr_assert_eq(r.exit_code, 127);
  FILE *f = fopen(report, "r");
  cr_assert(f != NULL, "no report written for a failed start");
  char *text = NULL;
  size_t len = 0;
  cr_assert(getdelim(&text, &len, '\0', f) > 0);
  fclose(f);
  cr_assert(strstr(text, "\"exit_code\": 127") != NULL, "report: %s", text);
  cr_assert(strstr(text, "\"reason\": \"setup-failed\"") != NULL, "report: %s", text);
  free(text);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

/* Times of the --trace-setup lines of one process (host, pid1, workload) in stderr, in order;
   returns their count, and false in *ordered when one goes backwards. */
static int trace_times(const char *err, const char *proc, bool *ordered) {
  int n = 0;
  double last = -1;
  *ordered = true;
  for (const char *p = strstr(err, "trace:"); p != NULL; p = strstr(p + 1, "trace:")) {
    double t = 0, step = 0;
    char who[16] = "";
    if (sscanf(p, "trace: %lf ms %lf %15s", &t, &step, who) != 3 || strcmp(who, proc) != 0) continue;
    if (t < last) *ordered = false;
    last = t;
    n++;
  }
  return n;
}

FX_BOTH(run, trace_setup_times_every_process) {
  struct kt_result r;
  fx_run(uid, FX_ARGS("--trace-setup"), FX_ARGS("/probe", "info"), &r);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  static const char *const steps[] = {"host     clone3", "pid1     GO received", "workdir, binds, pivot_root",
                                      "JOINED received", "workload loading the seccomp filter",
                                      "host     workload started", "sandbox removed"};
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
    cr_expect(strstr(r.err, steps[i]) != NULL, "no '%s' step in:\n%s", steps[i], r.err);
  static const char *const procs[] = {"host", "pid1", "workload"};
  for (size_t i = 0; i < 3; i++) {
    bool ordered;
    cr_expect_geq(trace_times(r.err, procs[i], &ordered), 2, "fewer than 2 %s steps:\n%s", procs[i], r.err);
    cr_expect(ordered, "%s steps go back in time:\n%s", procs[i], r.err);
  }
  kt_result_free(&r);
  /* Control: without the option, nothing is traced. */
  fx_run(uid, FX_NONE, FX_ARGS("/probe", "info"), &r);
  cr_expect(strstr(r.err, "trace:") == NULL, "traced without --trace-setup:\n%s", r.err);
  kt_result_free(&r);
}

/* The sandbox's pid 1 reaps what the workload orphans (util/pid1.h): from inside, no process of
   the pid namespace stays a zombie once its parent is gone. */
FX_BOTH(run, pid1_reaps_orphans) {
  struct kt_result r;
  const char *script = "sh -c 'sleep 0.2 & exit 0'; sleep 1; z=0; for f in /proc/[0-9]*/stat; do read l < $f; "
                       "case \"$l\" in *') Z '*) z=$((z+1));; esac; done; echo zombies=$z";
  fx_run(uid, FX_NONE, FX_ARGS("/bin/sh", "-c", script), &r);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  cr_assert(strstr(r.out, "zombies=0") != NULL, "the sandbox's pid 1 left a zombie; stdout: %s", r.out);
  kt_result_free(&r);
}
