/* Limits on the real host (hybrid here): each test runs a small hostile workload from the host's
   own tools (--rootfs /) and checks what the --report verdict and kbox's stderr say. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "testlib.h"

static void need_root(void) {
  if (!kt_is_root()) kt_skip_or_fail("the limits tests need root (cgroups here are writable by root only)");
  if (!kt_userns_works(-1)) kt_skip_or_fail("user namespaces do not work here");
  if (access("/usr/bin/python3", X_OK) != 0) kt_skip_or_fail("/usr/bin/python3 is missing");
}

/* Run kbox run --rootfs / --report FILE ARGS... ; returns the parsed verdict (or fails). */
static json_t *run_kbox(struct kt_result *r, const char *const args[], int timeout_s) {
  char report[] = "/tmp/kbox-limits-report-XXXXXX";
  int fd = mkstemp(report);
  cr_assert_geq(fd, 0);
  close(fd);
  const char *argv[64] = {kt_kbox(), "run", "--rootfs", "/", "--report", report};
  int n = 6;
  for (int i = 0; args[i] != NULL && n < 62; i++) argv[n++] = args[i];
  argv[n] = NULL;
  cr_assert_eq(kt_run((char *const *)argv, NULL, -1, timeout_s, r), 0);
  json_error_t jerr;
  json_t *v = json_load_file(report, 0, &jerr);
  unlink(report);
  cr_assert_not_null(v, "no verdict (%s); kbox exit %d, stderr:\n%s", jerr.text, r->exit_code, r->err);
  return v;
}

static const char *mechanism(json_t *v, const char *limit) {
  return json_string_value(json_object_get(json_object_get(json_object_get(v, "limits"), limit), "mechanism"));
}

/* Every limit has a cgroup mechanism on this host (v1 or v2): otherwise the test would prove nothing. */
static void assert_cgroup_mechanisms(json_t *v, struct kt_result *r) {
  const char *names[] = {"memory", "pids", "cpu"};
  for (int i = 0; i < 3; i++) {
    const char *m = mechanism(v, names[i]);
    cr_assert(m != NULL && strncmp(m, "cgroup", 6) == 0, "%s enforced by %s, stderr:\n%s", names[i], m, r->err);
  }
}

Test(limits, memory_hog_is_oom_killed_and_the_verdict_says_so, .timeout = 120) {
  need_root();
  struct kt_result r;
  const char *args[] = {"--memory", "64M", "--timeout", "60", "--", "/usr/bin/python3", "-c",
                        "x = []\nwhile True: x.append(bytearray(1 << 20))", NULL};
  json_t *v = run_kbox(&r, args, 90);
  assert_cgroup_mechanisms(v, &r);
  cr_assert(json_is_true(json_object_get(v, "oom_killed")), "verdict: oom_killed is not true; stderr:\n%s", r.err);
  cr_assert(json_is_false(json_object_get(v, "timed_out")));
  cr_assert_eq(r.exit_code, 137, "exit %d, stderr:\n%s", r.exit_code, r.err);
  cr_assert(strstr(r.err, "ran out of memory (limit 64 MiB)") != NULL, "stderr:\n%s", r.err);
  json_int_t peak = json_integer_value(json_object_get(v, "memory_peak"));
  cr_assert(peak > (32 << 20) && peak <= (64 << 20) + (1 << 20), "memory_peak %lld", (long long)peak);
  json_decref(v);
  kt_result_free(&r);
}

Test(limits, small_workload_is_not_reported_oom, .timeout = 60) {
  need_root();
  struct kt_result r;
  const char *args[] = {"--memory", "64M", "--", "/bin/sh", "-c", "exit 3", NULL};
  json_t *v = run_kbox(&r, args, 30);
  cr_assert_eq(r.exit_code, 3, "stderr:\n%s", r.err);
  cr_assert(json_is_false(json_object_get(v, "oom_killed")), "oom_killed must be false");
  cr_assert(json_is_false(json_object_get(v, "pids_limit_hit")), "pids_limit_hit must be false");
  cr_assert(strstr(r.err, "ran out of memory") == NULL, "stderr:\n%s", r.err);
  json_decref(v);
  kt_result_free(&r);
}

Test(limits, fork_bomb_stops_at_pids_and_kbox_still_enforces_timeout, .timeout = 120) {
  need_root();
  struct kt_result r;
  /* Every process forks forever; without the pids limit this would take the host down. */
  const char *args[] = {"--pids", "32", "--timeout", "3", "--", "/usr/bin/python3", "-c",
                        "import os\nwhile True:\n  try: os.fork()\n  except OSError: pass", NULL};
  json_t *v = run_kbox(&r, args, 60);
  assert_cgroup_mechanisms(v, &r);
  cr_assert(json_is_true(json_object_get(v, "pids_limit_hit")), "pids_limit_hit not true; stderr:\n%s", r.err);
  /* kbox stayed responsive: it noticed its deadline and ended the sandbox itself. */
  cr_assert(json_is_true(json_object_get(v, "timed_out")), "kbox did not enforce --timeout; stderr:\n%s", r.err);
  cr_assert_eq(r.exit_code, 124);
  cr_assert(strstr(r.err, "process limit (32") != NULL, "stderr:\n%s", r.err);
  /* The host still forks fine. */
  pid_t p = fork();
  if (p == 0) _exit(0);
  cr_assert_gt(p, 0);
  waitpid(p, NULL, 0);
  json_decref(v);
  kt_result_free(&r);
}

Test(limits, half_a_cpu_keeps_a_spin_near_half, .timeout = 120) {
  need_root();
  struct kt_result r;
  /* Two spinners want two CPUs: the 0.5 quota, not other load on the host, sets the rate. */
  char bind[4096];
  snprintf(bind, sizeof(bind), "%s/tests/limits:/kbox-limits:ro", getenv("KBOX_BUILD_ROOT"));
  const char *args[] = {"--cpus", "0.5", "--bind", bind, "--", "/kbox-limits/hog", "spin", "2", "2", NULL};
  json_t *v = run_kbox(&r, args, 60);
  assert_cgroup_mechanisms(v, &r);
  cr_assert_eq(r.exit_code, 0, "stderr:\n%s", r.err);
  double cpu = json_real_value(json_object_get(v, "cpu_seconds"));
  double wall = json_real_value(json_object_get(v, "wall_seconds"));
  cr_assert_gt(wall, 1.9);
  double ratio = cpu / wall;
  cr_assert(ratio >= 0.35 && ratio <= 0.65, "CPU-s per wall-s %.3f (cpu %.3f, wall %.3f) outside 0.35-0.65", ratio, cpu, wall);
  json_decref(v);
  kt_result_free(&r);
}

Test(limits, timeout_ends_a_sleeper, .timeout = 60) {
  need_root();
  struct kt_result r;
  const char *args[] = {"--timeout", "1", "--", "/bin/sleep", "30", NULL};
  json_t *v = run_kbox(&r, args, 30);
  cr_assert(json_is_true(json_object_get(v, "timed_out")));
  cr_assert_str_eq(json_string_value(json_object_get(v, "reason")), "timeout");
  cr_assert_eq(r.exit_code, 124);
  cr_assert(strstr(r.err, "--timeout") != NULL, "stderr:\n%s", r.err);
  json_decref(v);
  kt_result_free(&r);
}

Test(limits, disk_filler_gets_enospc, .timeout = 60) {
  need_root();
  struct kt_result r;
  /* Writes into the home directory, which lives in the size-capped upper layer. */
  const char *args[] = {"--disk", "16M", "--", "/bin/sh", "-c",
                        "dd if=/dev/zero of=\"$HOME/fill\" bs=1M count=64 2>&1; echo dd=$?; "
                        "ls -l \"$HOME/fill\"", NULL};
  json_t *v = run_kbox(&r, args, 30);
  cr_assert(strstr(r.out, "No space left on device") != NULL, "stdout:\n%s\nstderr:\n%s", r.out, r.err);
  cr_assert(strstr(r.out, "dd=0") == NULL, "dd succeeded past --disk 16M:\n%s", r.out);
  json_decref(v);
  kt_result_free(&r);
}

/* The directories named kbox.<pid>.* under each of this process's cgroups, as a list. */
static int find_sandbox_dirs(pid_t kbox, char out[][4096], int max) {
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_read(&l, &err), 0);
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "kbox.%d.", (int)kbox);
  int n = 0;
  for (int h = -1; h < KBOX_CTL_N; h++) {
    const char *mount = h < 0 ? l.v2_mount : l.v1_mount[h];
    if (mount == NULL) continue;
    char *parent = kbox_cgroup_parent_dir(mount, h < 0 ? l.v2_self : l.v1_self[h], NULL);
    DIR *d = opendir(parent);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
      if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && n < max)
        snprintf(out[n++], 4096, "%s/%s", parent, e->d_name);
    if (d) closedir(d);
    free(parent);
  }
  kbox_cgroup_layout_free(&l);
  return n;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

Test(limits, sigkill_of_kbox_leaves_no_cgroup_behind, .timeout = 60) {
  need_root();
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--", "/bin/sleep", "30", NULL};
  pid_t kbox = kt_spawn(argv, NULL, -1, "/dev/null");
  char dirs[8][4096];
  int n = 0;
  for (int i = 0; i < 300 && n < 3; i++) { /* wait until the sandbox is set up */
    sleep_ms(20);
    n = find_sandbox_dirs(kbox, dirs, 8);
  }
  cr_assert_geq(n, 3, "expected memory, pids and cpu sandbox cgroups, found %d", n);
  /* Wait until the sandbox is in them, so that the reaper has processes to kill too (a kill at any
     earlier moment is tested by the agent suite's faults test: the reaper knows each directory
     before it is created). */
  bool populated = false;
  for (int i = 0; i < 500 && !populated; i++) {
    char procs[4200], buf[64] = "";
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", dirs[0]);
    FILE *pf = fopen(procs, "r");
    populated = pf != NULL && fgets(buf, sizeof(buf), pf) != NULL;
    if (pf != NULL) fclose(pf);
    if (!populated) sleep_ms(20);
  }
  cr_assert(populated, "the sandbox never entered %s", dirs[0]);
  /* kbox itself is outside its sandbox cgroups. */
  char path[64], self[8192];
  snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)kbox);
  FILE *f = fopen(path, "r");
  size_t len = fread(self, 1, sizeof(self) - 1, f);
  self[len] = '\0';
  fclose(f);
  cr_assert(strstr(self, "kbox.") == NULL, "kbox is inside a sandbox cgroup:\n%s", self);
  kill(kbox, SIGKILL);
  waitpid(kbox, NULL, 0);
  int left = n;
  for (int i = 0; i < 500 && left > 0; i++) { /* the reaper removes them once kbox is gone */
    sleep_ms(20);
    left = 0;
    for (int k = 0; k < n; k++) left += access(dirs[k], F_OK) == 0;
  }
  for (int k = 0; k < n; k++) cr_assert_neq(access(dirs[k], F_OK), 0, "%s is left behind", dirs[k]);
}

/* A normal end without --report returns with the workload's status, before pid 1's namespaces are
   torn down, and leaves the cgroup directories to the reaper: they must still all go away, and
   while the workload ran it was in them (a workload limited by nothing would pass vacuously). */
Test(limits, normal_exit_leaves_no_cgroup_behind, .timeout = 60) {
  need_root();
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--", "/bin/sh", "-c", "sleep 1; exit 7", NULL};
  pid_t kbox = kt_spawn(argv, NULL, -1, "/dev/null");
  char dirs[8][4096];
  int n = 0;
  for (int i = 0; i < 300 && n < 3; i++) {
    sleep_ms(10);
    n = find_sandbox_dirs(kbox, dirs, 8);
  }
  cr_assert_geq(n, 3, "expected memory, pids and cpu sandbox cgroups, found %d", n);
  bool populated = false;
  for (int i = 0; i < 300 && !populated; i++) {
    char procs[4200], buf[64] = "";
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", dirs[0]);
    FILE *pf = fopen(procs, "r");
    populated = pf != NULL && fgets(buf, sizeof(buf), pf) != NULL;
    if (pf != NULL) fclose(pf);
    if (!populated) sleep_ms(10);
  }
  cr_assert(populated, "the sandbox never entered %s", dirs[0]);
  int st = 0;
  cr_assert_eq(waitpid(kbox, &st, 0), kbox);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 7, "kbox did not return the workload's status 7 (wait status %d)", st);
  int left = n;
  for (int i = 0; i < 500 && left > 0; i++) { /* the reaper removes them once the last task left */
    left = 0;
    for (int k = 0; k < n; k++) left += access(dirs[k], F_OK) == 0;
    if (left > 0) sleep_ms(20);
  }
  for (int k = 0; k < n; k++) cr_assert_neq(access(dirs[k], F_OK), 0, "%s is left behind", dirs[k]);
}

Test(limits, stale_empty_cgroup_of_a_dead_kbox_is_removed_at_next_start, .timeout = 60) {
  need_root();
  /* What a kbox killed together with its reaper would leave: an empty kbox.<deadpid>.* cgroup. */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_read(&l, &err), 0);
  cr_assert_not_null(l.v1_mount[KBOX_CTL_MEMORY] ? l.v1_mount[KBOX_CTL_MEMORY] : l.v2_mount);
  char *parent = l.v1_mount[KBOX_CTL_MEMORY]
                     ? kbox_cgroup_parent_dir(l.v1_mount[KBOX_CTL_MEMORY], l.v1_self[KBOX_CTL_MEMORY], NULL)
                     : kbox_cgroup_parent_dir(l.v2_mount, l.v2_self, NULL);
  char stale[4200];
  snprintf(stale, sizeof(stale), "%s/kbox.%d.stale", parent, (int)dead);
  cr_assert_eq(mkdir(stale, 0755), 0, "mkdir %s: %s", stale, strerror(errno));
  struct kt_result r;
  const char *argv[] = {kt_kbox(), "run", "--rootfs", "/", "--", "/bin/true", NULL};
  kt_run((char *const *)argv, NULL, -1, 30, &r);
  bool gone = access(stale, F_OK) != 0;
  if (!gone) rmdir(stale);
  cr_assert(gone, "stale %s survived a kbox start; stderr:\n%s", stale, r.err);
  cr_assert_eq(r.exit_code, 0, "stderr:\n%s", r.err);
  kt_result_free(&r);
  free(parent);
  kbox_cgroup_layout_free(&l);
}

/* A rootfs owned by nobody holding only the static hog helper (rootless kbox cannot use /). */
static char *rootless_rootfs(void) {
  char *dir = kt_tmpdir();
  static const char *const dirs[] = {"bin", "etc", "home", "proc", "sys", "dev", "tmp"};
  char p[4096], cmd[8192];
  for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
    snprintf(p, sizeof(p), "%s/%s", dir, dirs[i]);
    mkdir(p, 0755);
  }
  snprintf(cmd, sizeof(cmd), "cp '%s/tests/limits/hog' '%s/bin/hog' && printf 'jovyan:x:1000:100::/home/jovyan:/bin/hog\\n' > '%s/etc/passwd' && chown -R %d:%d '%s'",
           getenv("KBOX_BUILD_ROOT"), dir, dir, KT_NOBODY, KT_NOBODY, dir);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
  return dir;
}

Test(limits, rootless_without_cgroups_falls_back_to_rlimits, .timeout = 60) {
  if (!kt_is_root() || !kt_userns_works(KT_NOBODY))
    kt_skip_or_fail("needs root to become nobody, and user namespaces for nobody");
  /* nobody cannot create cgroups here: memory falls back to RLIMIT_AS, which a 300 MiB allocation
     under --memory 128M must hit. */
  char *rootfs = rootless_rootfs();
  char report[] = "/tmp/kbox-limits-rootless-XXXXXX";
  int fd = mkstemp(report);
  cr_assert_geq(fd, 0);
  cr_assert_eq(fchown(fd, KT_NOBODY, KT_NOBODY), 0);
  close(fd);
  const char *argv[] = {kt_kbox(), "run", "--rootfs", rootfs, "--memory", "128M", "--report", report, "--",
                        "/bin/hog", "try", "300", NULL};
  struct kt_result r;
  kt_run((char *const *)argv, NULL, KT_NOBODY, 30, &r);
  json_error_t jerr;
  json_t *v = json_load_file(report, 0, &jerr);
  unlink(report);
  cr_assert_not_null(v, "no verdict; exit %d stderr:\n%s", r.exit_code, r.err);
  cr_assert_str_eq(mechanism(v, "memory"), "rlimit", "stderr:\n%s", r.err);
  cr_assert_str_eq(mechanism(v, "pids"), "rlimit");
  cr_assert_str_eq(mechanism(v, "cpu"), "none");
  cr_assert(strstr(r.err, "cpu NOT enforced") != NULL, "the warning must name what is not enforced:\n%s", r.err);
  cr_assert(strstr(r.out, "ENOMEM") != NULL, "RLIMIT_AS did not stop a 300 MiB allocation:\n%s\n%s", r.out, r.err);
  json_decref(v);
  kt_result_free(&r);
  const char *small[] = {kt_kbox(), "run", "--rootfs", rootfs, "--memory", "128M", "--", "/bin/hog", "try", "16", NULL};
  kt_run((char *const *)small, NULL, KT_NOBODY, 30, &r);
  cr_assert(strstr(r.out, "ALLOCATED") != NULL, "a 16 MiB allocation must fit under 128M:\n%s\n%s", r.out, r.err);
  kt_result_free(&r);
  const char *strict[] = {kt_kbox(), "run", "--rootfs", rootfs, "--require-limits", "--", "/bin/hog", "try", "1", NULL};
  kt_run((char *const *)strict, NULL, KT_NOBODY, 30, &r);
  cr_assert_eq(r.exit_code, 125, "--require-limits must refuse; stderr:\n%s", r.err);
  cr_assert(strstr(r.err, "--require-limits") != NULL, "stderr:\n%s", r.err);
  kt_result_free(&r);
  kt_rmrf(rootfs);
  free(rootfs);
}
