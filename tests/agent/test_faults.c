/* Faults around kernels: kbox SIGKILLed while it starts, a stopped supervisor, out of memory in a
   detached kernel, a graceful shutdown that leaves stragglers, closed standard streams. After each,
   nothing of kbox may stay: no run directory (it holds the connection key), no socket file, no
   cgroup, no process. Kernels run with --rootfs / and the host's /usr/bin/python3 (ipykernel); each
   test has its own XDG_RUNTIME_DIR. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
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

#define KCMD "--kernel-cmd=/usr/bin/python3 -m ipykernel_launcher -f {connection_file}"

static char *tdir;
static char env_xdg[800], env_kbox[800];

static void setup(void) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (kernels of the host's root filesystem)");
  if (system("/usr/bin/python3 -c 'import ipykernel' 2>/dev/null") != 0)
    kt_skip_or_fail("/usr/bin/python3 has no ipykernel (apt-get install python3-ipykernel)");
  tdir = kt_tmpdir();
  char p[600];
  snprintf(p, sizeof(p), "%s/xdg", tdir);
  cr_assert(mkdir(p, 0700) == 0);
  snprintf(env_xdg, sizeof(env_xdg), "XDG_RUNTIME_DIR=%s", p);
  snprintf(env_kbox, sizeof(env_kbox), "KBOX=%s", kt_kbox());
}

static void teardown(void) {
  if (tdir == NULL) return;
  char cmd[2048];
  snprintf(cmd, sizeof(cmd), "for d in %s/xdg/kbox/*/; do [ -d \"$d\" ] && XDG_RUNTIME_DIR=%s/xdg %s kill \"$(basename \"$d\")\"; done 2>/dev/null",
           tdir, tdir, kt_kbox());
  if (system(cmd) < 0) {
  }
  kt_rmrf(tdir);
  free(tdir);
  tdir = NULL;
}

TestSuite(faults, .init = setup, .fini = teardown);

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL); }

/* kbox ARGS... in this test's runtime dir. */
static struct kt_result kbox(const char *const *args) {
  char *argv[32];
  int n = 0;
  argv[n++] = (char *)kt_kbox();
  for (; *args != NULL && n < 31; args++) argv[n++] = (char *)*args;
  argv[n] = NULL;
  char *env[] = {env_xdg, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, 300, &r), 0);
  return r;
}

static struct kt_result shell(const char *script) {
  char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
  char *env[] = {env_xdg, env_kbox, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, 300, &r), 0);
  return r;
}

/* Start kbox ARGS... in the background with stdout on a pipe (*out) and stderr to /dev/null. */
static pid_t spawn(const char *const *args, int *out) {
  int p[2];
  cr_assert(pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)kt_kbox();
    for (; *args != NULL && n < 31; args++) argv[n++] = (char *)*args;
    argv[n] = NULL;
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(p[1], 1);
    dup2(null, 2);
    putenv(env_xdg);
    execv(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  if (out != NULL) *out = p[0];
  else close(p[0]);
  return pid;
}

/* The first line on fd within timeout_s (static buffer), or NULL. */
static const char *read_line(int fd, int timeout_s) {
  static char buf[8192];
  size_t n = 0;
  long long end = (long long)time(NULL) + timeout_s;
  while (n < sizeof(buf) - 1 && memchr(buf, '\n', n) == NULL && time(NULL) < end) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  return memchr(buf, '\n', n) != NULL ? buf : NULL;
}

/* Processes whose command line contains needle (kbox's reapers and the sandbox's pid 1 are forks of
   kbox and keep its argv). */
static int processes_with(const char *needle) {
  DIR *d = opendir("/proc");
  int count = 0;
  for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
    if (atoi(e->d_name) <= 0 || atoi(e->d_name) == getpid()) continue;
    char p[300], buf[4096];
    snprintf(p, sizeof(p), "/proc/%s/cmdline", e->d_name);
    int fd = open(p, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) continue;
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] == '\0') buf[i] = ' ';
    buf[n] = '\0';
    if (strstr(buf, needle) != NULL) count++;
  }
  if (d != NULL) closedir(d);
  return count;
}

/* Wait (up to 20 s) until the runtime dir holds no run directory and no process of ID is left. */
static void assert_nothing_left(const char *id, const char *when) {
  char base[700], names[4096];
  snprintf(base, sizeof(base), "%s/xdg/kbox", tdir);
  int left = 0, procs = 0;
  for (int i = 0; i < 200; i++) {
    left = kt_dir_entries(base, names, sizeof(names));
    procs = processes_with(id);
    if (left == 0 && procs == 0) break;
    sleep_ms(100);
  }
  cr_assert_eq(left, 0, "%s: left in %s:%s", when, base, names);
  cr_assert_eq(procs, 0, "%s: %d process(es) of kernel %s still run", when, procs, id);
}

static json_t *parse(const char *text) {
  json_t *j = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
  cr_assert_not_null(j, "not JSON: %s", text);
  return j;
}

/* 7: SIGKILL of a kernel-mode kbox at any moment of its start (and once ready) leaves no run
   directory (the key is in it), no process, nothing for `ps` to show. */
Test(faults, sigkill_during_kernel_start_leaves_no_run_dir, .timeout = 600) {
  static const int delays_ms[] = {20, 80, 200, 500, 1000, 2000, -1}; /* -1: once ready */
  for (size_t i = 0; i < sizeof(delays_ms) / sizeof(delays_ms[0]); i++) {
    char id[64];
    snprintf(id, sizeof(id), "kill-%d-%zu", (int)getpid(), i);
    int out = -1;
    pid_t pid = spawn((const char *const[]){"run", "--rootfs", "/", KCMD, "--id", id, NULL}, &out);
    if (delays_ms[i] >= 0) sleep_ms(delays_ms[i]);
    else cr_assert_not_null(read_line(out, 120), "kernel %s did not start", id);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(out);
    char when[96];
    snprintf(when, sizeof(when), "SIGKILL %s %d ms into the start", id, delays_ms[i]);
    assert_nothing_left(id, when);
    struct kt_result r = kbox((const char *const[]){"ps", NULL});
    cr_assert(strstr(r.out, id) == NULL, "ps shows the dead kernel:\n%s", r.out);
    kt_result_free(&r);
  }
}

/* What a kbox killed together with its reaper leaves (a run dir with a key, its lock free) is
   removed by the next `run -- CMD` and by `ps`, not only by the next kernel start. */
Test(faults, stale_run_dir_is_swept_by_run_cmd_and_ps, .timeout = 120) {
  const char *sweepers[2][8] = {{"run", "--rootfs", "/", "--", "/bin/true", NULL}, {"ps", NULL}};
  for (int k = 0; k < 2; k++) {
    char dir[700], file[800];
    snprintf(dir, sizeof(dir), "%s/xdg/kbox", tdir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof(dir), "%s/xdg/kbox/stale%d", tdir, k);
    cr_assert(mkdir(dir, 0700) == 0);
    snprintf(file, sizeof(file), "%s/lock", dir);
    close(open(file, O_WRONLY | O_CREAT, 0600));
    snprintf(file, sizeof(file), "%s/connection.json", dir);
    int fd = open(file, O_WRONLY | O_CREAT, 0600);
    cr_assert(write(fd, "{\"key\": \"secret\"}\n", 18) == 18);
    close(fd);
    struct kt_result r = kbox(sweepers[k]);
    cr_assert_eq(r.exit_code, 0, "kbox %s: %s", sweepers[k][0], r.err);
    cr_assert(strstr(r.out, "stale") == NULL, "shown: %s", r.out);
    cr_assert_neq(access(dir, F_OK), 0, "kbox %s left the stale run dir %s", sweepers[k][0], dir);
    kt_result_free(&r);
  }
}

/* Host-side ipc socket files of PREFIX (PREFIX-N), names in names. */
static int ipc_files(const char *dir, char *names, size_t n) { return kt_dir_entries(dir, names, n); }

/* 8: --transport ipc: the socket files go with the kernel (kill, SIGKILL) and do not pile up. */
Test(faults, ipc_socket_files_do_not_outlive_the_kernel, .timeout = 300) {
  char dir[700], prefix[800], names[4096], id[64];
  snprintf(dir, sizeof(dir), "%s/ipc", tdir);
  cr_assert(mkdir(dir, 0700) == 0);
  snprintf(prefix, sizeof(prefix), "%s/k", dir);
  snprintf(id, sizeof(id), "ipc-%d", (int)getpid());
  for (int round = 0; round < 2; round++) {
    struct kt_result r = kbox((const char *const[]){"run", "--rootfs", "/", KCMD, "--id", id, "--detach", "--transport",
                                                    "ipc", "--ip", prefix, NULL});
    cr_assert_eq(r.exit_code, 0, "%s", r.err);
    json_t *j = parse(r.out);
    for (const char *const *p = (const char *const[]){"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port", NULL}; *p; p++)
      cr_assert(json_integer_value(json_object_get(j, *p)) <= 5, "round %d: %s is %lld: old socket files piled up", round, *p,
                (long long)json_integer_value(json_object_get(j, *p)));
    json_decref(j);
    kt_result_free(&r);
    cr_assert_eq(ipc_files(dir, names, sizeof(names)), 5, "expected 5 socket files:%s", names);
    if (round == 0) {
      r = kbox((const char *const[]){"kill", id, NULL});
      cr_assert_eq(r.exit_code, 0, "%s", r.err);
      kt_result_free(&r);
    } else {
      r = kbox((const char *const[]){"inspect", id, NULL});
      j = parse(r.out);
      pid_t sup = (pid_t)json_integer_value(json_object_get(j, "pid"));
      json_decref(j);
      kt_result_free(&r);
      cr_assert(sup > 0);
      kill(sup, SIGKILL);
    }
    int left = 0;
    for (int i = 0; i < 100 && (left = ipc_files(dir, names, sizeof(names))) > 0; i++) sleep_ms(100);
    cr_assert_eq(left, 0, "after %s: socket files left:%s", round == 0 ? "kbox kill" : "SIGKILL", names);
    assert_nothing_left(id, round == 0 ? "kbox kill" : "SIGKILL of the supervisor");
  }
}

/* kbox.<pid>.* directories of pid in the sandbox cgroup parents; paths in out. */
static int cgroup_dirs(const struct kbox_cgroup_layout *l, pid_t pid, char out[][4096], int max) {
  const char *mounts[1 + KBOX_CTL_N], *selves[1 + KBOX_CTL_N];
  int m = 0, n = 0;
  if (l->v2_mount != NULL) mounts[m] = l->v2_mount, selves[m++] = l->v2_self;
  for (int c = 0; c < KBOX_CTL_N; c++)
    if (l->v1_mount[c] != NULL) mounts[m] = l->v1_mount[c], selves[m++] = l->v1_self[c];
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "kbox.%d.", (int)pid);
  for (int i = 0; i < m; i++) {
    char *parent = kbox_cgroup_parent_dir(mounts[i], selves[i], NULL);
    DIR *d = opendir(parent);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
      if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && n < max) snprintf(out[n++], 4096, "%s/%s", parent, e->d_name);
    if (d != NULL) closedir(d);
    free(parent);
  }
  return n;
}

/* 9: SIGKILL in the first milliseconds of `run -- sleep 5` (while the cgroups are being created)
   leaves no kbox.* cgroup directory: the reaper knows each one before it exists. */
Test(faults, sigkill_while_creating_cgroups_leaves_none, .timeout = 600) {
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_read(&l, &err), 0);
  char found[8][4096];
  /* First: does kbox make sandbox cgroups here at all? */
  pid_t probe = spawn((const char *const[]){"run", "--rootfs", "/", "--", "/bin/sleep", "5", NULL}, NULL);
  int made = 0;
  for (int i = 0; i < 100 && made == 0; i++, sleep_ms(20)) made = cgroup_dirs(&l, probe, found, 8);
  kill(probe, SIGKILL);
  waitpid(probe, NULL, 0);
  if (made == 0) kt_skip_or_fail("kbox creates no sandbox cgroup on this host");
  int kills = 0;
  for (int delay_us = 0; delay_us <= 30000; delay_us += 1500) {
    for (int rep = 0; rep < 2; rep++, kills++) {
      pid_t pid = spawn((const char *const[]){"run", "--rootfs", "/", "--", "/bin/sleep", "5", NULL}, NULL);
      usleep((useconds_t)delay_us);
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      int left = 0;
      for (int i = 0; i < 200 && (left = cgroup_dirs(&l, pid, found, 8)) > 0; i++) sleep_ms(50);
      cr_assert_eq(left, 0, "SIGKILL %d us after start left %s (and %d more)", delay_us, found[0], left - 1);
    }
  }
  cr_assert_gt(kills, 20);
  kbox_cgroup_layout_free(&l);
}

/* 10: out of memory in a detached kernel: exec --id says oom (exit 3), not died. */
Test(faults, oom_in_detached_kernel_is_oom, .timeout = 300) {
  char id[64];
  snprintf(id, sizeof(id), "oom-%d", (int)getpid());
  struct kt_result r = kbox((const char *const[]){"run", "--rootfs", "/", KCMD, "--id", id, "--detach", "--memory", "300M", NULL});
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  kt_result_free(&r);
  r = kbox((const char *const[]){"exec", "--id", id, "-c", "x = bytearray(900 * 2**20)\nx[::4096] = b'a' * len(x[::4096])", NULL});
  json_t *j = parse(r.out);
  const char *ename = json_string_value(json_object_get(json_object_get(j, "error"), "ename"));
  if (r.exit_code == 1 && ename != NULL && strcmp(ename, "MemoryError") == 0)
    kt_skip_or_fail("no cgroup memory controller here: --memory is an address-space rlimit (MemoryError, not an OOM kill)");
  cr_assert_eq(r.exit_code, 3, "exit %d: %s\n%s", r.exit_code, r.out, r.err);
  cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "oom");
  cr_assert(json_is_true(json_object_get(json_object_get(j, "report"), "oom_killed")), "%s", r.out);
  json_decref(j);
  kt_result_free(&r);
  assert_nothing_left(id, "after the OOM");
}

/* 11: a stopped supervisor: exec --id --timeout 5 fails within about its timeout naming the cause,
   ps says stopped, kbox kill still ends it. */
Test(faults, stopped_supervisor_is_named_not_waited_for, .timeout = 300) {
  char id[64];
  snprintf(id, sizeof(id), "stop-%d", (int)getpid());
  struct kt_result r = kbox((const char *const[]){"run", "--rootfs", "/", KCMD, "--id", id, "--detach", NULL});
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  kt_result_free(&r);
  r = kbox((const char *const[]){"inspect", id, NULL});
  json_t *j = parse(r.out);
  pid_t sup = (pid_t)json_integer_value(json_object_get(j, "pid"));
  json_decref(j);
  kt_result_free(&r);
  cr_assert(sup > 0);
  kill(sup, SIGSTOP);
  r = kbox((const char *const[]){"ps", NULL});
  cr_assert(strstr(r.out, "stopped") != NULL, "ps does not say stopped:\n%s", r.out);
  kt_result_free(&r);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  r = kbox((const char *const[]){"exec", "--id", id, "--timeout", "5", "-c", "1", NULL});
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long long ms = (t1.tv_sec - t0.tv_sec) * 1000LL + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  cr_assert_eq(r.exit_code, 125, "exit %d: %s %s", r.exit_code, r.out, r.err);
  cr_assert(strstr(r.err, "stopped") != NULL && strstr(r.err, "kill -CONT") != NULL, "%s", r.err);
  cr_assert_lt(ms, 15000, "exec --id --timeout 5 took %lld ms against a stopped supervisor", ms); /* hang detector */
  kt_result_free(&r);
  r = kbox((const char *const[]){"kill", id, NULL});
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  kt_result_free(&r);
  assert_nothing_left(id, "kbox kill of a stopped supervisor");
}

/* 12: SIGTERM while the workload left a process that ignores SIGTERM: the kernel shuts down as
   asked, kbox kills what is left after its grace, and says so (exit 0, reason shutdown). */
Test(faults, graceful_sigterm_with_stragglers_is_reported_as_such, .timeout = 300) {
  char id[64], report[700];
  snprintf(id, sizeof(id), "strag-%d", (int)getpid());
  snprintf(report, sizeof(report), "%s/verdict.json", tdir);
  int out = -1;
  pid_t pid = spawn((const char *const[]){"run", "--rootfs", "/", KCMD, "--id", id, "--report", report, NULL}, &out);
  cr_assert_not_null(read_line(out, 120), "kernel %s did not start", id);
  struct kt_result r = kbox((const char *const[]){"exec", "--id", id, "-c",
                                                  "import subprocess\n"
                                                  "p = subprocess.Popen(['sh', '-c', 'trap \"\" TERM; echo armed; exec sleep 1000'], "
                                                  "stdout=subprocess.PIPE)\n"
                                                  "assert p.stdout.readline() == b'armed\\n'", NULL});
  cr_assert_eq(r.exit_code, 0, "%s %s", r.out, r.err);
  kt_result_free(&r);
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  close(out);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "kbox ended with wait status %#x", st);
  json_t *j = json_load_file(report, 0, NULL);
  cr_assert_not_null(j, "no verdict in %s", report);
  cr_assert_str_eq(json_string_value(json_object_get(j, "reason")), "shutdown");
  cr_assert_eq(json_integer_value(json_object_get(j, "exit_code")), 0);
  cr_assert(json_is_true(json_object_get(j, "stragglers_killed")));
  cr_assert(json_is_null(json_object_get(j, "signal_name")));
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "kernel"), "ended_by")), "sigterm");
  json_decref(j);
  assert_nothing_left(id, "after the shutdown");
}

/* 13: kernel mode with stdin and stderr closed works (exec one-shot, run --detach, exec --id). */
Test(faults, closed_standard_streams, .timeout = 300) {
  char script[2048], id[64];
  snprintf(id, sizeof(id), "closed-%d", (int)getpid());
  snprintf(script, sizeof(script), "\"$KBOX\" exec --rootfs / '%s' -c 'print(6 * 7)' <&- 2>&-", KCMD);
  struct kt_result r = shell(script);
  cr_assert_eq(r.exit_code, 0, "exit %d: %s", r.exit_code, r.out);
  cr_assert(strstr(r.out, "\"status\":\"ok\"") != NULL && strstr(r.out, "42") != NULL, "%s", r.out);
  kt_result_free(&r);
  snprintf(script, sizeof(script), "\"$KBOX\" run --rootfs / '%s' --id %s --detach <&- 2>&-", KCMD, id);
  r = shell(script);
  cr_assert_eq(r.exit_code, 0, "exit %d: %s", r.exit_code, r.out);
  cr_assert(strstr(r.out, "\"shell_port\"") != NULL, "no connection JSON: %s", r.out);
  kt_result_free(&r);
  snprintf(script, sizeof(script), "\"$KBOX\" exec --id %s -c 'print(7 * 7)' <&- 2>&-", id);
  r = shell(script);
  cr_assert_eq(r.exit_code, 0, "exit %d: %s", r.exit_code, r.out);
  cr_assert(strstr(r.out, "49") != NULL, "%s", r.out);
  kt_result_free(&r);
  r = kbox((const char *const[]){"kill", id, NULL});
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  kt_result_free(&r);
  assert_nothing_left(id, "kbox kill");
}
