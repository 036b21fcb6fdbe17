/* Bad values and bad files are refused before anything starts: exit 125, the message names the
   option, the file or the limit, nothing hangs (a FIFO with no writer, /dev/zero), and nothing is
   left behind (no run directory, so no key, no socket). One table row per case. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define KCMD "--kernel-cmd=/usr/bin/python3 -m ipykernel_launcher -f {connection_file}"
#define CASE_TIMEOUT_S 30 /* a case that hangs (FIFO, endless read) fails instead of blocking CI */

struct cli_case {
  const char *name;
  const char *args[12];  /* kbox arguments; "@" at the start of one is replaced by the test directory */
  const char *sh;        /* or: a shell command run with $KBOX and $T set (for redirections) */
  int code;              /* expected exit code */
  const char *needles[3]; /* each must appear in stderr */
  bool needs_sandbox;    /* the case gets as far as creating a sandbox (of the host's root: needs root) */
};

static const struct cli_case cases[] = {
    {"cpus hex", {"run", "--rootfs", "/", "--cpus", "0x10", "--", "true"}, NULL, 125, {"--cpus", "0x10", "decimal"}},
    {"cpus exponent", {"run", "--rootfs", "/", "--cpus", "1e1", "--", "true"}, NULL, 125, {"--cpus", "1e1"}},
    {"size hex", {"run", "--rootfs", "/", "--memory", "0x40000000", "--", "true"}, NULL, 125, {"--memory", "0x40000000"}},
    {"disk 0", {"run", "--rootfs", "/", "--disk", "0", "--", "true"}, NULL, 125, {"--disk", "minimum", "no limit"}},
    {"memory 0", {"run", "--rootfs", "/", "--memory", "0", "--", "true"}, NULL, 125, {"--memory", "minimum is 16MiB"}},
    {"hostname newline", {"run", "--rootfs", "/", "--hostname", "a\nb", "--", "true"}, NULL, 125, {"--hostname", "'a\\nb'"}},
    {"hostname dash", {"run", "--rootfs", "/", "--hostname", "-x", "--", "true"}, NULL, 125, {"--hostname", "not a hostname"}},
    {"hostname space", {"run", "--rootfs", "/", "--hostname", "a b", "--", "true"}, NULL, 125, {"--hostname"}},
    {"bind over /proc", {"run", "--rootfs", "/", "--bind", "/etc:/proc", "--", "true"}, NULL, 125, {"--bind", "/proc", "mounts itself"}},
    {"bind below /sys", {"run", "--rootfs", "/", "--bind", "/etc:/sys/fs", "--", "true"}, NULL, 125, {"--bind", "below /sys"}},
    {"bind over //dev/", {"run", "--rootfs", "/", "--bind", "/etc://dev/", "--", "true"}, NULL, 125, {"--bind", "/dev"}},
    {"bind over /run/kbox", {"run", "--rootfs", "/", "--bind", "/etc:/run/./kbox", "--", "true"}, NULL, 125, {"--bind", "/run/kbox"}},
    {"bind over /tmp", {"run", "--rootfs", "/", "--bind", "/etc:/tmp", "--", "true"}, NULL, 125, {"--bind", "/tmp", "size-capped"}},
    {"relative rootfs", {"run", "--rootfs", "kbox-cli-no-such-dir", "--", "true"}, NULL, 125, {"--rootfs", "kbox-cli-no-such-dir"}},
    {"cgroup parent ..", {"run", "--rootfs", "/", "--cgroup-parent", "../../etc", "--", "true"}, NULL, 125, {"--cgroup-parent", "absolute"}},
    {"cgroup parent dotdot inside", {"run", "--rootfs", "/", "--cgroup-parent", "/a/../../etc", "--", "true"}, NULL, 125, {"--cgroup-parent", "'..'"}},
    {"cgroup parent relative", {"run", "--rootfs", "/", "--cgroup-parent", "kbox.slice", "--", "true"}, NULL, 125, {"--cgroup-parent", "absolute"}},
    {"cgroup parent missing", {"run", "--rootfs", "/", "--cgroup-parent", "/kbox-cli-test-missing.slice", "--", "true"}, NULL, 125,
     {"--cgroup-parent /kbox-cli-test-missing.slice", "cannot be used"}, true},
    {"env-file fifo", {"run", "--rootfs", "/", "--env-file", "@/fifo", "--", "true"}, NULL, 125, {"--env-file", "fifo", "FIFO"}},
    {"env-file device", {"run", "--rootfs", "/", "--env-file", "/dev/zero", "--", "true"}, NULL, 125, {"--env-file", "character device"}},
    {"env-file NUL", {"run", "--rootfs", "/", "--env-file", "@/nul.env", "--", "true"}, NULL, 125, {"--env-file", "nul.env:1", "NUL byte"}},
    {"env-file control", {"run", "--rootfs", "/", "--env-file", "@/ctl.env", "--", "true"}, NULL, 125, {"ctl.env:2", "'A\\x01B'"}},
    {"env-file too big", {"run", "--rootfs", "/", "--env-file", "@/big.env", "--", "true"}, NULL, 125, {"--env-file", "limit of 1MiB"}},
    {"profile fifo", {"run", "--rootfs", "/", "--profile", "@/fifo", "--", "true"}, NULL, 125, {"--profile", "FIFO"}},
    {"profile device", {"run", "--rootfs", "/", "--profile", "/dev/zero", "--", "true"}, NULL, 125, {"--profile", "character device"}},
    {"id control", {"run", "--rootfs", "/", "--id", "a\033b", "--", "true"}, NULL, 125, {"--id", "'a\\x1bb'"}},
    {"option control", {"run", "--x\007", "--", "true"}, NULL, 125, {"'--x\\x07'"}},
    {"report missing dir", {"run", "--rootfs", "/", "--report", "@/missing/r.json", "--", "true"}, NULL, 125, {"--report", "missing"}},
    {"report is a dir", {"run", "--rootfs", "/", "--report", "@/dir", "--", "true"}, NULL, 125, {"--report", "is a directory"}},
    {"connection file missing dir", {"run", "--rootfs", "/", KCMD, "--connection-file", "@/missing/c.json"}, NULL, 125,
     {"--connection-file", "missing"}},
    {"connection file fifo", {"run", "--rootfs", "/", KCMD, "--connection-file", "@/fifo"}, NULL, 125, {"--connection-file", "FIFO"}},
    {"connection file is a dir", {"run", "--rootfs", "/", KCMD, "--connection-file", "@/dir"}, NULL, 125, {"--connection-file", "directory"}},
    {"ip not an ip", {"run", "--rootfs", "/", KCMD, "--ip", "not-an-ip"}, NULL, 125, {"--ip", "not-an-ip", "not an IPv4"}},
    {"connection file bad ip", {"run", "--rootfs", "/", KCMD, "--connection-file", "@/badip.json"}, NULL, 125,
     {"badip.json", "\"ip\"", "not-an-ip"}},
    {"connection file port in use", {"run", "--rootfs", "/", KCMD, "--connection-file", "@/port.json"}, NULL, 125,
     {"port.json", "shell_port", "already in use"}},
    {"connection file same port twice", {"run", "--rootfs", "/", KCMD, "--connection-file", "@/dup.json"}, NULL, 125,
     {"dup.json", "both"}},
    {"kernel-cmd not found", {"run", "--rootfs", "/", "--kernel-cmd", "kbox-cli-no-such-kernel -f {connection_file}"}, NULL, 125,
     {"--kernel-cmd", "kbox-cli-no-such-kernel", "not found"}, true},
    {"relative rootfs that exists", {NULL}, "cd / && exec \"$KBOX\" run --rootfs . -- /bin/sh -c 'exit 7'", 7, {NULL}, true},
    {"exec device", {"exec", "/dev/zero"}, NULL, 125, {"/dev/zero", "character device"}},
    {"exec fifo", {"exec", "@/fifo"}, NULL, 125, {"fifo", "FIFO"}},
    {"exec stdin endless", {NULL}, "exec \"$KBOX\" exec - </dev/zero", 125, {"standard input", "limit of 16MiB"}},
    {"exec stdin NUL", {NULL}, "printf 'x = 1\\0' | exec \"$KBOX\" exec -", 125, {"standard input", "NUL byte"}},
    {"image inspect missing", {"image", "inspect", "kbox-cli-nosuch"}, NULL, 125, {"kbox-cli-nosuch"}},
    {"image rm dotdot", {"image", "rm", "../.."}, NULL, 125, {"bad image name"}},
    {"image unknown verb", {"image", "frob"}, NULL, 125, {"frob"}},
};

static char *tdir;          /* this test's directory */
static char env_xdg[800], env_images[800], env_kbox[800], env_t[800];
static int busy_fd = -1;    /* the listening socket whose port port.json names */

static void put(const char *name, const char *text, size_t len) {
  char p[700];
  snprintf(p, sizeof(p), "%s/%s", tdir, name);
  kt_write_data(p, text, len);
}

/* A port on 127.0.0.1 held by this process. */
static unsigned busy_port(void) {
  busy_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  cr_assert(bind(busy_fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(busy_fd, 1) == 0 &&
            getsockname(busy_fd, (struct sockaddr *)&a, &len) == 0);
  return ntohs(a.sin_port);
}

static void setup(void) {
  tdir = kt_tmpdir();
  char p[700], json[256];
  snprintf(p, sizeof(p), "%s/xdg", tdir);
  cr_assert(mkdir(p, 0700) == 0);
  snprintf(env_xdg, sizeof(env_xdg), "XDG_RUNTIME_DIR=%s", p);
  snprintf(env_images, sizeof(env_images), "KBOX_IMAGES_DIR=%s/images", tdir);
  snprintf(env_kbox, sizeof(env_kbox), "KBOX=%s", kt_kbox());
  snprintf(env_t, sizeof(env_t), "T=%s", tdir);
  snprintf(p, sizeof(p), "%s/fifo", tdir);
  cr_assert(mkfifo(p, 0644) == 0);
  snprintf(p, sizeof(p), "%s/dir", tdir);
  cr_assert(mkdir(p, 0755) == 0);
  put("nul.env", "A=1\0B=2\n", 8);
  put("ctl.env", "OK=1\nA\001B=2\n", 11);
  char *big = malloc((1u << 20) + 16);
  memset(big, '#', (1u << 20) + 16);
  put("big.env", big, (1u << 20) + 16);
  free(big);
  const char *badip = "{\"ip\": \"not-an-ip\", \"key\": \"k\", \"transport\": \"tcp\"}\n";
  put("badip.json", badip, strlen(badip));
  snprintf(json, sizeof(json), "{\"ip\": \"127.0.0.1\", \"key\": \"k\", \"transport\": \"tcp\", \"shell_port\": %u}\n", busy_port());
  put("port.json", json, strlen(json));
  const char *dup = "{\"ip\": \"127.0.0.1\", \"key\": \"k\", \"shell_port\": 41234, \"iopub_port\": 41234}\n";
  put("dup.json", dup, strlen(dup));
}

static void teardown(void) {
  if (busy_fd >= 0) close(busy_fd);
  busy_fd = -1;
  if (tdir != NULL) kt_rmrf(tdir);
  free(tdir);
  tdir = NULL;
}

TestSuite(cli, .init = setup, .fini = teardown);

static void run_case(const struct cli_case *c) {
  char *argv[16], bufs[12][700];
  int n = 0;
  if (c->sh != NULL) {
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = (char *)c->sh;
  } else {
    argv[n++] = (char *)kt_kbox();
    for (int i = 0; i < 12 && c->args[i] != NULL; i++) {
      if (c->args[i][0] == '@') {
        snprintf(bufs[i], sizeof(bufs[i]), "%s%s", tdir, c->args[i] + 1);
        argv[n++] = bufs[i];
      } else {
        argv[n++] = (char *)c->args[i];
      }
    }
  }
  argv[n] = NULL;
  char *env[] = {env_xdg, env_images, env_kbox, env_t, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, CASE_TIMEOUT_S, &r), 0);
  cr_assert(WIFEXITED(r.status), "[%s] did not finish within %d s (hangs?) or was killed; stderr:\n%s", c->name,
            CASE_TIMEOUT_S, r.err);
  cr_assert_eq(r.exit_code, c->code, "[%s] exit %d, expected %d; stderr:\n%s", c->name, r.exit_code, c->code, r.err);
  for (int i = 0; i < 3 && c->needles[i] != NULL; i++)
    cr_assert(strstr(r.err, c->needles[i]) != NULL, "[%s] the error does not say '%s':\n%s", c->name, c->needles[i], r.err);
  cr_assert(strchr(r.err, '\033') == NULL && strchr(r.err, '\001') == NULL && strchr(r.err, '\007') == NULL,
            "[%s] a control character was echoed raw:\n%s", c->name, r.err);
  char base[700], names[2048];
  snprintf(base, sizeof(base), "%s/xdg/kbox", tdir);
  cr_assert_eq(kt_dir_entries(base, names, sizeof(names)), 0, "[%s] left in %s:%s", c->name, base, names);
  cr_assert_eq(kt_dir_entries(tdir, names, sizeof(names)), 9, "[%s] the test directory changed:%s", c->name, names);
  kt_result_free(&r);
}

/* The parameter is an index: the workers are new processes (pointers into the table would not be). */
static int case_index[sizeof(cases) / sizeof(cases[0])];

ParameterizedTestParameters(cli, refused_before_starting) {
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) case_index[i] = (int)i;
  return cr_make_param_array(int, case_index, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(int *index, cli, refused_before_starting, .timeout = 120) {
  const struct cli_case *c = &cases[*index];
  if (c->needs_sandbox && !kt_is_root()) kt_skip_or_fail("this case starts a sandbox of the host's root: needs root");
  run_case(c);
}

/* --report is written whole (temporary file + rename): valid JSON, no temporary file left. */
Test(cli, report_is_written_atomically, .timeout = 120) {
  if (!kt_is_root()) kt_skip_or_fail("starts a sandbox of the host's root: needs root");
  char report[700];
  snprintf(report, sizeof(report), "%s/dir/verdict.json", tdir);
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--report", report, "--", "/bin/sh", "-c", "exit 3", NULL};
  char *env[] = {env_xdg, env_images, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, 60, &r), 0);
  cr_assert_eq(r.exit_code, 3, "stderr:\n%s", r.err);
  json_t *j = json_load_file(report, 0, NULL);
  cr_assert_not_null(j, "%s is not JSON", report);
  cr_assert_eq(json_integer_value(json_object_get(j, "exit_code")), 3);
  json_decref(j);
  char dir[700], names[2048];
  snprintf(dir, sizeof(dir), "%s/dir", tdir);
  cr_assert_eq(kt_dir_entries(dir, names, sizeof(names)), 1, "expected only verdict.json in %s:%s", dir, names);
  unlink(report);
  kt_result_free(&r);
}
