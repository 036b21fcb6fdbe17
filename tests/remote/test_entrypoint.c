/* `kbox entrypoint` end to end. The "pod" is a network namespace with a veth pair (private
   addresses only between that namespace and the host end we create); a Python stand-in plays
   Enterprise Gateway on the host side. Needs root (netns, veth, nested sandbox). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

static char ns[32], veth_host[16], veth_pod[16], host_ip[32], pod_ip[32];
static char standin[4096];
static char *tmp;
static bool have_ns;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The simulated pod: netns + veth, 10.213.<n>.1 (host end) <-> 10.213.<n>.2 (pod). */
static void make_pod(void) {
  if (!kt_is_root()) kt_skip_or_fail("needs root to create a network namespace and a veth pair");
  unsigned n = (unsigned)getpid() % 250 + 1;
  snprintf(ns, sizeof(ns), "kbxpod%d", getpid());
  snprintf(veth_host, sizeof(veth_host), "kbxh%d", getpid() % 100000);
  snprintf(veth_pod, sizeof(veth_pod), "kbxp%d", getpid() % 100000);
  snprintf(host_ip, sizeof(host_ip), "10.213.%u.1", n);
  snprintf(pod_ip, sizeof(pod_ip), "10.213.%u.2", n);
  cr_assert_eq(sh("ip netns add %s", ns), 0);
  have_ns = true;
  cr_assert_eq(sh("ip link add %s type veth peer name %s netns %s", veth_host, veth_pod, ns), 0);
  cr_assert_eq(sh("ip addr add %s/30 dev %s && ip link set %s up", host_ip, veth_host, veth_host), 0);
  cr_assert_eq(sh("ip -n %s addr add %s/30 dev %s && ip -n %s link set %s up && ip -n %s link set lo up", ns, pod_ip,
                  veth_pod, ns, veth_pod, ns), 0);
}

static void setup(void) {
  snprintf(standin, sizeof(standin), "%s/tests/remote/eg_standin.py", getenv("KBOX_SOURCE_ROOT"));
  tmp = kt_tmpdir();
}

static void teardown(void) {
  if (have_ns) {
    sh("ip link del %s 2>/dev/null", veth_host);
    sh("ip netns del %s", ns);
  }
  have_ns = false;
  if (tmp) kt_rmrf(tmp);
  free(tmp);
  tmp = NULL;
}

#define KERNEL_IMAGE "/var/lib/kbox/rootfs/default"

static bool have_image(void) {
  struct stat st;
  return stat(KERNEL_IMAGE "/usr/bin/python3", &st) == 0;
}

/* The nested sandbox's root: the kernel image when built, else the host's root (usable by kbox as
   root of the initial user namespace only). */
static const char *rootfs(void) {
  return have_image() ? KERNEL_IMAGE : "/";
}

/* The kernel image, which a kbox outside the initial user namespace needs (the host's / has
   locked submounts there, which overlayfs refuses as a layer). */
static const char *image_or_skip(void) {
  if (!have_image()) kt_skip_or_fail("the default kernel image " KERNEL_IMAGE " is not built (kbox image build default)");
  return KERNEL_IMAGE;
}

/* Start argv in the background with extra env, output to file; returns the pid. */
static pid_t spawn(char *const argv[], char *const env[], const char *out) { return kt_spawn(argv, env, -1, out); }

/* Wait for pid at most timeout_s; kill it past that. Returns the exit code (128+sig). */
static int wait_for(pid_t pid, int timeout_s) {
  for (int i = 0; i < timeout_s * 10; i++) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    usleep(100000);
  }
  kill(pid, SIGKILL);
  int st = 0;
  waitpid(pid, &st, 0);
  return -1;
}

static char *slurp(const char *path) {
  char *text = NULL;
  FILE *f = fopen(path, "r");
  if (f == NULL) return strdup("");
  size_t n = 0;
  ssize_t r = getdelim(&text, &n, '\0', f);
  fclose(f);
  if (r < 0) return strdup("");
  return text;
}

/* Wait until a file exists (the stand-in's ready file). */
static bool wait_file(const char *path, int timeout_s) {
  for (int i = 0; i < timeout_s * 10; i++) {
    if (access(path, F_OK) == 0) return true;
    usleep(100000);
  }
  return false;
}

static char kbox_path[4096];

/* argv running `kbox entrypoint` inside the pod namespace. */
static char **pod_argv(void) {
  static char *argv[8];
  snprintf(kbox_path, sizeof(kbox_path), "%s", kt_kbox());
  argv[0] = "ip";
  argv[1] = "netns";
  argv[2] = "exec";
  argv[3] = ns;
  argv[4] = kbox_path;
  argv[5] = "entrypoint";
  argv[6] = NULL;
  return argv;
}

/* "NAME=value", kept until exit (putenv keeps the pointer); held in a static table so that
   LeakSanitizer sees them as reachable. */
static char *env_kept[64];
static char *envf(const char *name_eq, const char *v) {
  static size_t n;
  char *s = NULL;
  if (n == sizeof(env_kept) / sizeof(env_kept[0]) || asprintf(&s, "%s%s", name_eq, v) < 0) abort();
  env_kept[n++] = s;
  return s;
}

TestSuite(entrypoint, .init = setup, .fini = teardown);

Test(entrypoint, enterprise_gateway_launch_in_a_simulated_pod, .timeout = 240) {
  make_pod();
  char ready[4096], gw_out[4096], kb_out[4096], listen[64];
  snprintf(ready, sizeof(ready), "%s/ready", tmp);
  snprintf(gw_out, sizeof(gw_out), "%s/gateway.out", tmp);
  snprintf(kb_out, sizeof(kb_out), "%s/kbox.out", tmp);
  snprintf(listen, sizeof(listen), "%s:0", host_ip);
  const char *kid = "0f0e0d0c-1111-4222-8333-444455556666";
  char *gw_argv[] = {"/usr/bin/python3", standin, "gateway", "--listen", listen, "--ready", ready, "--kernel-id", (char *)kid, "--timeout", "120", NULL};
  pid_t gw = spawn(gw_argv, NULL, gw_out);
  cr_assert(wait_file(ready, 60), "the stand-in gateway did not start");
  char *vars = slurp(ready);
  char pub[2048], addr[128];
  snprintf(pub, sizeof(pub), "%s", kt_field(vars, "PUBLIC_KEY"));
  snprintf(addr, sizeof(addr), "%s", kt_field(vars, "RESPONSE_ADDRESS"));
  free(vars);
  char status[4096];
  snprintf(status, sizeof(status), "%s/status.json", tmp);
  char *env[] = {envf("KERNEL_ID=", kid), envf("RESPONSE_ADDRESS=", addr), envf("PUBLIC_KEY=", pub),
                 "EG_PORT_RANGE=40000..41000", envf("KBOX_ROOTFS=", rootfs()), envf("KBOX_STATUS_FILE=", status),
                 "KERNEL_USERNAME=alice", NULL};
  pid_t kb = spawn(pod_argv(), env, kb_out);
  int gw_code = wait_for(gw, 180);
  int kb_code = wait_for(kb, 30);
  char *gw_text = slurp(gw_out), *kb_text = slurp(kb_out);
  cr_assert_eq(gw_code, 0, "gateway steps failed:\n%s\nkbox:\n%s", gw_text, kb_text);
  cr_assert(strstr(gw_text, "ok interrupt via comm port") && strstr(gw_text, "ok execute") &&
            strstr(gw_text, "ok signum 0 disturbed nothing") && !strstr(gw_text, "FAIL"), "%s", gw_text);
  /* ports from the range; comm port too */
  const char *info = strstr(gw_text, "info ");
  cr_assert_not_null(info);
  int comm = 0, shell = 0;
  const char *p = strstr(info, "\"comm_port\": ");
  if (p) comm = atoi(p + 13);
  p = strstr(info, "\"shell_port\": ");
  if (p) shell = atoi(p + 14);
  cr_assert(comm >= 40000 && comm <= 41000 && shell >= 40000 && shell <= 41000, "ports outside PORT_RANGE: %s", info);
  cr_assert_eq(kb_code, 0, "kbox exited %d after shutdown:\n%s", kb_code, kb_text);
  char *st = slurp(status);
  cr_assert(strstr(st, "\"protections\"") && strstr(st, "\"userns\""), "status file: %s", st);
  free(st);
  free(gw_text);
  free(kb_text);
}

/* Run the entrypoint with env in the foreground; returns exit code and output. */
static int run_entry(char *const env[], int timeout_s, char **out) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/run.out", tmp);
  char k[4096];
  snprintf(k, sizeof(k), "%s", kt_kbox());
  char *argv[] = {k, "entrypoint", NULL};
  pid_t pid = spawn(argv, env, path);
  int code = wait_for(pid, timeout_s);
  *out = slurp(path);
  return code;
}

Test(entrypoint, fail_fast_cases_name_the_cause, .timeout = 120) {
  char *out = NULL;
  char *bad_key[] = {"KERNEL_ID=k1", "RESPONSE_ADDRESS=127.0.0.1:9", "PUBLIC_KEY=bm90IGEga2V5", NULL};
  int code = run_entry(bad_key, 30, &out);
  cr_assert(code != 0 && code != -1 && strstr(out, "PUBLIC_KEY"), "code %d: %s", code, out);
  free(out);
  char *no_id[] = {"RESPONSE_ADDRESS=127.0.0.1:9", "PUBLIC_KEY=AAAA", NULL};
  code = run_entry(no_id, 30, &out);
  cr_assert(code != 0 && code != -1 && strstr(out, "KERNEL_ID is not set"), "code %d: %s", code, out);
  free(out);
  char *small[] = {"KERNEL_ID=k1", "RESPONSE_ADDRESS=127.0.0.1:9", "PUBLIC_KEY=AAAA", "PORT_RANGE=40000..40010", NULL};
  code = run_entry(small, 30, &out);
  cr_assert(code != 0 && code != -1 && strstr(out, "PORT_RANGE '40000..40010'"), "code %d: %s", code, out);
  free(out);
  /* a valid key, but nobody listens at the response address */
  char pem[4096];
  snprintf(pem, sizeof(pem), "%s/private.pem", tmp);
  char *kg[] = {"/usr/bin/python3", standin, "keygen", pem, NULL};
  struct kt_result r;
  kt_run(kg, NULL, -1, 60, &r);
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  r.out[strcspn(r.out, "\n")] = '\0';
  char *unreach[] = {"KERNEL_ID=k1", "RESPONSE_ADDRESS=127.0.0.1:9", envf("PUBLIC_KEY=", r.out),
                     envf("KBOX_ROOTFS=", rootfs()), "KBOX_STATUS_FILE=", NULL};
  code = run_entry(unreach, 90, &out);
  cr_assert(code != 0 && code != -1 && strstr(out, "RESPONSE_ADDRESS 127.0.0.1:9"), "code %d: %s", code, out);
  free(out);
  kt_result_free(&r);
}

/* A jupyter_client check against fixed ports: execute and expect 42. A client without a kernel
   manager judges the kernel dead when the first heartbeat goes unanswered (kernel still starting),
   so it retries with a fresh client for up to a minute. */
static int client_check(const char *ip, const char *key) {
  char code[4096];
  snprintf(code, sizeof(code),
           "import time\n"
           "from jupyter_client import BlockingKernelClient\n"
           "deadline = time.time() + 60\n"
           "while True:\n"
           "    kc = BlockingKernelClient()\n"
           "    kc.load_connection_info(dict(ip='%s', transport='tcp', shell_port=52317, iopub_port=52318, hb_port=52319,"
           " control_port=52320, stdin_port=52321, key='%s', signature_scheme='hmac-sha256'))\n"
           "    kc.start_channels()\n"
           "    try:\n"
           "        kc.wait_for_ready(timeout=10)\n"
           "        break\n"
           "    except RuntimeError:\n"
           "        kc.stop_channels()\n"
           "        if time.time() > deadline: raise\n"
           "        time.sleep(0.5)\n"
           "out = []\n"
           "r = kc.execute_interactive('print(6 * 7)', timeout=30, output_hook=lambda m: out.append(m['content'].get('text', '')))\n"
           "assert r['content']['status'] == 'ok' and ''.join(out).strip() == '42', (r['content'], out)\n"
           "print('client ok')\n", ip, key);
  char *argv[] = {"/usr/bin/python3", "-c", code, NULL};
  struct kt_result r;
  kt_run(argv, NULL, -1, 120, &r);
  int c = r.exit_code;
  if (c != 0) fprintf(stderr, "client: %s %s\n", r.out, r.err);
  kt_result_free(&r);
  return c;
}

Test(entrypoint, controller_fixed_ports_key_file_and_sigterm, .timeout = 240) {
  make_pod();
  char keyfile[4096], out[4096];
  snprintf(keyfile, sizeof(keyfile), "%s/key", tmp);
  snprintf(out, sizeof(out), "%s/kbox.out", tmp);
  kt_write_file(keyfile, "mounted-secret-key\n");
  char *env[] = {"KERNEL_ID=kernel-ctl-1", "KERNEL_SHELL_PORT=52317", "KERNEL_IOPUB_PORT=52318", "KERNEL_HB_PORT=52319",
                 "KERNEL_CONTROL_PORT=52320", "KERNEL_STDIN_PORT=52321", envf("KERNEL_KEY_FILE=", keyfile),
                 envf("KBOX_ROOTFS=", rootfs()), "KBOX_STATUS_FILE=", NULL};
  pid_t kb = spawn(pod_argv(), env, out);
  int c = client_check(pod_ip, "mounted-secret-key");
  kill(kb, SIGTERM);
  int code = wait_for(kb, 30);
  char *text = slurp(out);
  cr_assert_eq(c, 0, "client failed; kbox said:\n%s", text);
  cr_assert_eq(code, 0, "SIGTERM should end the kernel cleanly, got %d:\n%s", code, text);
  cr_assert(strstr(text, "signing messages with KERNEL_ID") == NULL, "%s", text);
  free(text);
}

Test(entrypoint, controller_idle_timeout_exits_zero, .timeout = 120) {
  char *env[] = {"KERNEL_ID=kernel-idle", "KERNEL_SHELL_PORT=52417", "KERNEL_IOPUB_PORT=52418", "KERNEL_HB_PORT=52419",
                 "KERNEL_CONTROL_PORT=52420", "KERNEL_STDIN_PORT=52421", "KERNEL_IDLE_TIMEOUT=3",
                 envf("KBOX_ROOTFS=", rootfs()), "KBOX_STATUS_FILE=", NULL};
  /* in a pod namespace of its own: fixed ports on the shared host network could be taken */
  make_pod();
  char path[4096];
  snprintf(path, sizeof(path), "%s/idle.out", tmp);
  int code = wait_for(spawn(pod_argv(), env, path), 90);
  char *out = slurp(path);
  cr_assert_eq(code, 0, "exit %d:\n%s", code, out);
  cr_assert(strstr(out, "KERNEL_IDLE_TIMEOUT=3s: culled") != NULL, "%s", out);
  cr_assert(strstr(out, "signing messages with KERNEL_ID") != NULL, "no warning about the public key: %s", out);
  free(out);
}

/* KBOX_AUDIT in the pod's environment: the entrypoint's kernel is audited like a kbox run one. */
Test(entrypoint, controller_audit_log_from_env, .timeout = 120) {
  char log[4096];
  snprintf(log, sizeof(log), "%s/audit.jsonl", tmp);
  char *env[] = {"KERNEL_ID=kernel-audit", "KERNEL_SHELL_PORT=52517", "KERNEL_IOPUB_PORT=52518", "KERNEL_HB_PORT=52519",
                 "KERNEL_CONTROL_PORT=52520", "KERNEL_STDIN_PORT=52521", "KERNEL_IDLE_TIMEOUT=3",
                 envf("KBOX_ROOTFS=", rootfs()), "KBOX_STATUS_FILE=", envf("KBOX_AUDIT=", log), NULL};
  make_pod();
  char path[4096];
  snprintf(path, sizeof(path), "%s/audit.out", tmp);
  int code = wait_for(spawn(pod_argv(), env, path), 90);
  char *out = slurp(path);
  cr_assert_eq(code, 0, "exit %d:\n%s", code, out);
  free(out);
  char *text = slurp(log);
  cr_assert(text != NULL, "no audit log at %s", log);
  cr_assert(strstr(text, "\"event\":\"kernel_start\"") != NULL && strstr(text, "\"how\":\"entrypoint\"") != NULL, "%s", text);
  cr_assert(strstr(text, "\"event\":\"kernel_end\"") != NULL, "%s", text);
  cr_assert(strstr(text, "\"ended_by\":\"idle_timeout\"") != NULL, "the verdict is missing: %s", text);
  free(text);
}

/* Write a /proc file from a child (no criterion asserts there). */
static bool put(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return false;
  bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
  close(fd);
  return ok;
}

/* Start the entrypoint in the pod's netns, inside a new user + mount namespace where we are root
   (ids 0..65535 mapped 1:1) and where user namespaces are then refused (max_user_namespaces=0). */
static pid_t spawn_degraded(char *const env[], const char *out) {
  int to_parent[2], to_child[2];
  cr_assert_eq(pipe(to_parent), 0);
  cr_assert_eq(pipe(to_child), 0);
  char nspath[128];
  snprintf(nspath, sizeof(nspath), "/var/run/netns/%s", ns);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    int nsfd = open(nspath, O_RDONLY);
    char c;
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0 || unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) _exit(90);
    if (write(to_parent[1], "m", 1) != 1 || read(to_child[0], &c, 1) != 1) _exit(91);
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) _exit(92);
    if (!put("/proc/sys/user/max_user_namespaces", "0\n")) _exit(93);
    for (int i = 0; env[i]; i++) putenv(env[i]);
    execl(kt_kbox(), "kbox", "entrypoint", (char *)NULL);
    _exit(98);
  }
  char c;
  cr_assert_eq(read(to_parent[0], &c, 1), 1, "the degraded child did not start");
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
  cr_assert(put(path, "0 0 65536\n"));
  snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
  cr_assert(put(path, "0 0 65536\n"));
  cr_assert_eq(write(to_child[1], "g", 1), 1);
  close(to_parent[0]), close(to_parent[1]), close(to_child[0]), close(to_child[1]);
  return pid;
}

Test(entrypoint, degraded_without_user_namespaces, .timeout = 240) {
  make_pod();
  const char *image = image_or_skip();
  char status[4096], out[4096];
  snprintf(status, sizeof(status), "%s/status.json", tmp);
  snprintf(out, sizeof(out), "%s/deg.out", tmp);
  char *env[] = {"KERNEL_ID=kernel-deg", "KERNEL_SHELL_PORT=52317", "KERNEL_IOPUB_PORT=52318", "KERNEL_HB_PORT=52319",
                 "KERNEL_CONTROL_PORT=52320", "KERNEL_STDIN_PORT=52321", "KERNEL_KEY=degraded-key",
                 envf("KBOX_ROOTFS=", image), envf("KBOX_STATUS_FILE=", status), NULL};
  pid_t pid = spawn_degraded(env, out);
  int c = client_check(pod_ip, "degraded-key");
  /* readiness for an exec probe: the status file says "ready" once the kernel answered */
  bool ready = false;
  for (int i = 0; i < 100 && !ready && c == 0; i++) {
    char *st = slurp(status);
    ready = strstr(st, "\"state\": \"ready\"") != NULL;
    free(st);
    if (!ready) usleep(100000);
  }
  kill(pid, SIGTERM);
  int code = wait_for(pid, 30);
  char *text = slurp(out);
  cr_assert_eq(c, 0, "the kernel did not work without user namespaces (exit %d):\n%s", code, text);
  cr_assert_eq(code, 0, "exit %d:\n%s", code, text);
  cr_assert(ready, "the status file never said the kernel was ready");
  cr_assert(strstr(text, "protections active: pidns,mountns,netns,ipcns,utsns,cgroupns") != NULL, "%s", text);
  cr_assert(strstr(text, "missing: userns (creating a user namespace:") != NULL, "%s", text);
  free(text);
  char *st = slurp(status);
  cr_assert(strstr(st, "\"userns\": \"creating a user namespace"), "status: %s", st);
  cr_assert(strstr(st, "\"pidns\"") && !strstr(st, "\"pidns\": \""), "pidns should be active: %s", st);
  free(st);
  char *env2[] = {"KBOX_REQUIRE=userns,seccomp", "KERNEL_ID=kernel-deg", "KERNEL_SHELL_PORT=52317", "KERNEL_KEY=k",
                  envf("KBOX_ROOTFS=", image), "KBOX_STATUS_FILE=", NULL};
  pid = spawn_degraded(env2, out);
  code = wait_for(pid, 60);
  text = slurp(out);
  cr_assert(code != 0 && code != -1, "KBOX_REQUIRE=userns did not fail:\n%s", text);
  cr_assert(strstr(text, "KBOX_REQUIRE: required protection missing in this pod: userns (") != NULL, "%s", text);
  cr_assert(strstr(text, "seccomp (") == NULL, "seccomp works here and was reported missing: %s", text);
  free(text);
}

/* Outside the initial user namespace the host's / has locked submounts: a layer with mounts below
   it is refused before the sandbox starts, naming the cause (not overlayfs' bare EINVAL). */
Test(entrypoint, degraded_refuses_a_layer_with_locked_submounts, .timeout = 120) {
  make_pod();
  char out[4096];
  snprintf(out, sizeof(out), "%s/locked.out", tmp);
  char *env[] = {"KERNEL_ID=kernel-locked", "KERNEL_SHELL_PORT=52317", "KERNEL_KEY=k", "KBOX_ROOTFS=/",
                 "KBOX_STATUS_FILE=", NULL};
  pid_t pid = spawn_degraded(env, out);
  int code = wait_for(pid, 60);
  char *text = slurp(out);
  cr_assert_eq(code, 125, "exit %d:\n%s", code, text);
  cr_assert(strstr(text, "--rootfs /: kbox running outside the host's initial user namespace") != NULL &&
            strstr(text, "mounted below it") != NULL, "%s", text);
  free(text);
}

/* ---- suite 'oci': the image built by tools/mkoci, unpacked into a bundle and run by runc ---- */

static char runc_root[4096], runc_id[64];

static void oci_teardown(void) {
  if (runc_id[0] != '\0') sh("runc --root %s delete -f %s >/dev/null 2>&1", runc_root, runc_id);
  runc_id[0] = '\0';
  teardown();
}

TestSuite(oci, .init = setup, .fini = oci_teardown);

/* The real image as a pod would run it: user jovyan, no capabilities, the runtime's namespaces,
   kbox's nested sandbox inside; controller variables; a host-side jupyter_client through the
   pod's veth; SIGTERM through runc ends it with 0. */
Test(oci, runc_runs_the_image_and_the_kernel_answers, .timeout = 900) {
  if (!kt_is_root()) kt_skip_or_fail("needs root to run runc and to create a network namespace");
  if (sh("command -v runc >/dev/null") != 0) kt_skip_or_fail("runc is not installed (Debian package runc)");
  const char *image = image_or_skip();
  make_pod();
  const char *src = getenv("KBOX_SOURCE_ROOT"), *build = getenv("KBOX_BUILD_ROOT");
  cr_assert(src && build, "KBOX_SOURCE_ROOT and KBOX_BUILD_ROOT must be set (meson test)");
  cr_assert_eq(sh("%s/tools/mkoci build --rootfs %s --build %s --out %s/layout >%s/mkoci.out 2>&1", src, image, build,
                  tmp, tmp), 0, "mkoci build failed (see %s/mkoci.out)", tmp);
  cr_assert_eq(sh("%s/tools/mkoci bundle %s/layout %s/bundle --nested --netns /var/run/netns/%s"
                  " --env KERNEL_ID=kernel-oci --env KERNEL_SHELL_PORT=52317 --env KERNEL_IOPUB_PORT=52318"
                  " --env KERNEL_HB_PORT=52319 --env KERNEL_CONTROL_PORT=52320 --env KERNEL_STDIN_PORT=52321"
                  " --env KERNEL_KEY=oci-key >>%s/mkoci.out 2>&1", src, tmp, tmp, ns, tmp), 0,
               "mkoci bundle failed (see %s/mkoci.out)", tmp);
  /* the image layout is not needed once unpacked: free its gigabyte before the kernel starts */
  sh("rm -rf %s/layout", tmp);
  snprintf(runc_root, sizeof(runc_root), "%s/runc-state", tmp);
  snprintf(runc_id, sizeof(runc_id), "kbox-oci-%d", getpid());
  char bundle[4096], out[4096];
  snprintf(bundle, sizeof(bundle), "%s/bundle", tmp);
  snprintf(out, sizeof(out), "%s/runc.out", tmp);
  char *argv[] = {"runc", "--root", runc_root, "run", "--bundle", bundle, runc_id, NULL};
  pid_t pid = spawn(argv, NULL, out);
  int c = client_check(pod_ip, "oci-key");
  sh("runc --root %s kill %s TERM", runc_root, runc_id);
  int code = wait_for(pid, 60);
  char *text = slurp(out);
  cr_assert_eq(c, 0, "the kernel in the container did not answer; runc said:\n%s", text);
  cr_assert_eq(code, 0, "runc run exited %d after SIGTERM:\n%s", code, text);
  /* kbox ran as the image's user and built its own user namespace sandbox inside the container */
  cr_assert(strstr(text, "protections active: userns,pidns,mountns,netns,ipcns,utsns,cgroupns") != NULL &&
            strstr(text, "seccomp,caps") != NULL, "%s", text);
  free(text);
}
