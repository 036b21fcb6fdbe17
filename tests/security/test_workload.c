/* The positive side of the default profile: real data workloads run with not a single denial.
   "No denial" is proven with a test-only copy of profiles/default.json whose default action is
   SCMP_ACT_KILL_PROCESS instead of "fail with EPERM": any syscall outside the allow-list kills the
   workload with SIGSYS (exit 159), so a workload that finishes and prints the expected results
   made no refused call (the only refusals left are the profile's explicit rules: clone3 -> ENOSYS,
   ioctl TIOCSTI/TIOCLINUX). A negative control shows the variant does catch a refused call. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

#define PY "/usr/bin/python3"

static const char *data_py =
    "import os, threading, socket, subprocess, multiprocessing as mp, tempfile\n"
    "import numpy as np, pandas as pd\n"
    "import matplotlib\n"
    "matplotlib.use('Agg')\n"
    "import matplotlib.pyplot as plt\n"
    "a = np.random.default_rng(0).standard_normal((400, 400))\n"
    "b = a @ a.T\n"
    "df = pd.DataFrame({'g': np.arange(1000) % 7, 'x': np.arange(1000.0)})\n"
    "s = df.groupby('g').x.sum()\n"
    "fig, ax = plt.subplots(); ax.plot(s.index, s.values)\n"
    "png = os.path.join(tempfile.gettempdir(), 'plot.png'); fig.savefig(png)\n"
    "res = []\n"
    "t = [threading.Thread(target=lambda: res.append(float(np.linalg.svd(np.eye(40))[1][0]))) for _ in range(4)]\n"
    "[x.start() for x in t]; [x.join() for x in t]\n"
    "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
    "c = socket.create_connection(srv.getsockname()); conn, _ = srv.accept(); c.sendall(b'ping'); got = conn.recv(4)\n"
    "socket.getaddrinfo('localhost', 80, flags=socket.AI_ADDRCONFIG)\n"
    "sub = subprocess.run(['echo', 'sub'], capture_output=True, text=True).stdout.strip()\n"
    "with mp.Pool(2) as p: sq = p.map(abs, [-1, -2])\n"
    "print('png=%s' % (open(png, 'rb').read(8) == b'\\x89PNG\\r\\n\\x1a\\n'))\n"
    "print('sum=%d' % int(s.sum()))\n"
    "print('threads=%d svd=%s' % (len(res), set(res)))\n"
    "print('tcp=%s sub=%s pool=%s' % (got.decode(), sub, sq))\n"
    "print('symmetric=%s' % bool(np.allclose(b, b.T)))\n"
    "try:\n"
    "    import scipy.optimize, scipy.stats\n"
    "    r = scipy.optimize.minimize(lambda x: ((x - 3) ** 2).sum(), np.zeros(3))\n"
    "    print('scipy=%s %s' % (np.round(r.x, 2).tolist(), round(float(scipy.stats.norm.cdf(0)), 2)))\n"
    "except ImportError:\n"
    "    print('scipy=absent')\n";

static bool python_has(const char *modules) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), PY " -c 'import %s' >/dev/null 2>&1", modules);
  return access(PY, X_OK) == 0 && system(cmd) == 0;
}

/* Write profiles/default.json with defaultAction SCMP_ACT_KILL_PROCESS to dir/kill.json. */
static void write_kill_variant(const char *dir, char *out, size_t n) {
  char src[4096];
  snprintf(src, sizeof(src), "%s/profiles/default.json", getenv("KBOX_SOURCE_ROOT"));
  json_error_t je;
  json_t *p = json_load_file(src, 0, &je);
  cr_assert_not_null(p, "%s: %s", src, je.text);
  json_t *sc = json_object_get(p, "seccomp");
  json_object_set_new(sc, "defaultAction", json_string("SCMP_ACT_KILL_PROCESS"));
  json_object_del(sc, "defaultErrnoRet");
  snprintf(out, n, "%s/kill.json", dir);
  cr_assert_eq(json_dump_file(p, out, JSON_INDENT(1)), 0);
  json_decref(p);
}

/* kbox run --rootfs / --profile PROFILE --bind dir:/work:ro [extra] -- python3 /work/SCRIPT */
static void run_py(const char *profile, const char *dir, const char *script, struct kt_result *r) {
  char bind[4200], path[4200];
  snprintf(bind, sizeof(bind), "%s:/work:ro", dir);
  snprintf(path, sizeof(path), "/work/%s", script);
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--profile", (char *)profile, "--bind", bind,
                  "--memory", "2G", "--", PY, path, NULL};
  cr_assert_eq(kt_run(argv, NULL, -1, 240, r), 0);
}

Test(workload, data_stack_runs_without_a_single_denial) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (--rootfs / with the host's Python)");
  if (!python_has("numpy, pandas, matplotlib"))
    kt_skip_or_fail(PY " lacks numpy/pandas/matplotlib (Debian: python3-numpy python3-pandas python3-matplotlib)");
  char *dir = kt_tmpdir();
  char kill_profile[4200], script[4200];
  write_kill_variant(dir, kill_profile, sizeof(kill_profile));
  snprintf(script, sizeof(script), "%s/data.py", dir);
  kt_write_file(script, data_py);
  const char *profiles[] = {kill_profile, "default"};
  for (int i = 0; i < 2; i++) {
    struct kt_result r;
    run_py(profiles[i], dir, "data.py", &r);
    cr_expect_eq(r.exit_code, 0, "profile %s: exit %d (159 = killed by a refused syscall)\nstdout:\n%s\nstderr:\n%s",
                 profiles[i], r.exit_code, r.out, r.err);
    cr_expect_str_eq(kt_field(r.out, "png") ? kt_field(r.out, "png") : "?", "True");
    cr_expect_str_eq(kt_field(r.out, "sum") ? kt_field(r.out, "sum") : "?", "499500");
    cr_expect_str_eq(kt_field(r.out, "threads") ? kt_field(r.out, "threads") : "?", "4 svd={1.0}");
    cr_expect_str_eq(kt_field(r.out, "tcp") ? kt_field(r.out, "tcp") : "?", "ping sub=sub pool=[1, 2]");
    cr_expect_str_eq(kt_field(r.out, "symmetric") ? kt_field(r.out, "symmetric") : "?", "True");
    cr_expect_str_eq(kt_field(r.out, "scipy") ? kt_field(r.out, "scipy") : "?",
                     python_has("scipy") ? "[3.0, 3.0, 3.0] 0.5" : "absent");
    kt_result_free(&r);
  }
  kt_rmrf(dir);
  free(dir);
}

Test(workload, kill_variant_catches_a_refused_call) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (--rootfs / with the host's Python)");
  if (access(PY, X_OK) != 0) kt_skip_or_fail(PY " is missing");
  char *dir = kt_tmpdir();
  char kill_profile[4200], script[4200];
  write_kill_variant(dir, kill_profile, sizeof(kill_profile));
  snprintf(script, sizeof(script), "%s/packet.py", dir);
  kt_write_file(script, "import socket\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
                     "    print('packet=opened')\nexcept PermissionError:\n    print('packet=EPERM')\n");
  struct kt_result r;
  run_py(kill_profile, dir, "packet.py", &r);
  cr_expect_eq(r.exit_code, 128 + SIGSYS, "a refused syscall must kill under the test variant: exit %d, out %s",
               r.exit_code, r.out);
  kt_result_free(&r);
  run_py("default", dir, "packet.py", &r);
  cr_expect_eq(r.exit_code, 0, "%s", r.err);
  cr_expect_str_eq(kt_field(r.out, "packet") ? kt_field(r.out, "packet") : "?", "EPERM");
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

/* ipykernel + pyzmq over loopback TCP, kernel and client both inside the sandbox. */
Test(workload, ipykernel_runs_without_a_single_denial) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (--rootfs / with the host's Python)");
  if (!python_has("ipykernel, jupyter_client, zmq, numpy"))
    kt_skip_or_fail(PY " lacks ipykernel/jupyter_client (Debian: python3-ipykernel python3-jupyter-client)");
  char *dir = kt_tmpdir();
  char kill_profile[4200], script[4200];
  write_kill_variant(dir, kill_profile, sizeof(kill_profile));
  snprintf(script, sizeof(script), "%s/kernel.py", dir);
  kt_write_file(script,
             "import os\n"
             "os.environ.pop('JPY_PARENT_PID', None)\n"
             "from jupyter_client.manager import start_new_kernel\n"
             "km, kc = start_new_kernel(kernel_name='python3')\n"
             "reply = kc.execute_interactive('import numpy, threading; print(int(numpy.arange(10).sum()))', timeout=60,\n"
             "    output_hook=lambda m: m['msg_type'] == 'stream' and print('kernel=' + m['content']['text'].strip()))\n"
             "print('status=' + reply['content']['status'])\n"
             "kc.stop_channels(); km.shutdown_kernel(now=True)\n");
  struct kt_result r;
  run_py(kill_profile, dir, "kernel.py", &r);
  cr_expect_eq(r.exit_code, 0, "exit %d (159 = a refused syscall)\n%s\n%s", r.exit_code, r.out, r.err);
  cr_expect_str_eq(kt_field(r.out, "kernel") ? kt_field(r.out, "kernel") : "?", "45", "%s\n%s", r.out, r.err);
  cr_expect_str_eq(kt_field(r.out, "status") ? kt_field(r.out, "status") : "?", "ok");
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

/* Profile limits fill options not given; the command line wins. */
Test(workload, profile_limits_are_defaults) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (--rootfs /)");
  struct { const char *profile, *extra, *want; } cases[] = {
      {"default", NULL, "1024"}, {"strict", NULL, "256"}, {"strict", "--nofile=512", "512"}};
  for (int i = 0; i < 3; i++) {
    char *argv[12];
    int n = 0;
    argv[n++] = (char *)kt_kbox();
    argv[n++] = "run";
    argv[n++] = "--rootfs";
    argv[n++] = "/";
    argv[n++] = "--profile";
    argv[n++] = (char *)cases[i].profile;
    if (cases[i].extra) argv[n++] = (char *)cases[i].extra;
    argv[n++] = "--";
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = "echo nofile=$(ulimit -n)";
    argv[n] = NULL;
    struct kt_result r;
    cr_assert_eq(kt_run(argv, NULL, -1, 60, &r), 0);
    cr_expect_eq(r.exit_code, 0, "%s", r.err);
    cr_expect_str_eq(kt_field(r.out, "nofile") ? kt_field(r.out, "nofile") : "?", cases[i].want, "case %d: %s", i, r.err);
    kt_result_free(&r);
  }
}

/* A broken profile stops kbox before anything starts, naming file, JSON path and problem. */
Test(workload, broken_or_unknown_profile_is_an_error) {
  char *dir = kt_tmpdir();
  char path[4200];
  snprintf(path, sizeof(path), "%s/typo.json", dir);
  kt_write_file(path, "{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": ["
                   "{\"names\": [\"read\", \"mout\"], \"action\": \"SCMP_ACT_ALLOW\"}]}}");
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--profile", path, "--", "/bin/true", NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, -1, 60, &r), 0);
  cr_expect_eq(r.exit_code, 125);
  cr_expect(strstr(r.err, path) && strstr(r.err, "seccomp.syscalls[0].names[1]") && strstr(r.err, "unknown syscall 'mout'"),
            "%s", r.err);
  kt_result_free(&r);
  char *argv2[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--profile", "no-such-profile", "--", "/bin/true", NULL};
  cr_assert_eq(kt_run(argv2, NULL, -1, 60, &r), 0);
  cr_expect_eq(r.exit_code, 125);
  cr_expect(strstr(r.err, "no profile named 'no-such-profile'") != NULL, "%s", r.err);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

/* strict: only AF_UNIX sockets. */
Test(workload, strict_refuses_inet_sockets) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (--rootfs /)");
  if (access(PY, X_OK) != 0) kt_skip_or_fail(PY " is missing");
  char *dir = kt_tmpdir();
  char script[4200];
  snprintf(script, sizeof(script), "%s/inet.py", dir);
  kt_write_file(script, "import socket\nsocket.socket(socket.AF_UNIX).close()\ntry:\n    socket.socket().close()\n"
                     "    print('inet=opened')\nexcept PermissionError:\n    print('inet=EPERM')\n");
  struct kt_result r;
  run_py("strict", dir, "inet.py", &r);
  cr_expect_str_eq(kt_field(r.out, "inet") ? kt_field(r.out, "inet") : "?", "EPERM", "%s", r.err);
  kt_result_free(&r);
  run_py("default", dir, "inet.py", &r);
  cr_expect_str_eq(kt_field(r.out, "inet") ? kt_field(r.out, "inet") : "?", "opened", "%s", r.err);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}
