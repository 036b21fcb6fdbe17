#include "cmd/run_opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel/kernel_args.h"
#include "kernel/audit.h" /* KBOX_AUDIT_ENV */
#include "net/rules.h"
#include "sandbox/image.h"
#include "sandbox/mounts.h"
#include "security/security.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/envfile.h"
#include "util/parse.h"
#include "util/trace.h"

enum {
  OPT_ROOTFS = 1000, OPT_DISK, OPT_WORKDIR, OPT_BIND, OPT_NET, OPT_ENV, OPT_ENV_FILE, OPT_USER,
  OPT_HOSTNAME, OPT_ID, OPT_TIMEOUT, OPT_REPORT, OPT_MEMORY, OPT_SWAP, OPT_PIDS, OPT_CPUS, OPT_NOFILE,
  OPT_CGROUP_PARENT, OPT_REQUIRE_LIMITS, OPT_PROFILE, OPT_SECCOMP, OPT_VERBOSE, OPT_HELP,
  OPT_IMAGE, OPT_STARTUP_DIR,
  OPT_DETACH, OPT_COLD,
  OPT_TRACE_SETUP,
  OPT_CONNECTION_FILE, OPT_IP, OPT_TRANSPORT, OPT_PORT_RANGE, OPT_KERNEL_CMD, OPT_MAX_MESSAGE, OPT_INSECURE_NO_KEY,
  OPT_EXEC_TIMEOUT, OPT_IDLE_TIMEOUT, OPT_WORKDIR_FROM_CWD,
  OPT_NET_MAX_BYTES, OPT_AUDIT,
};

struct opt_doc {
  const char *name;
  int has_arg;
  int id;
  const char *metavar;
  const char *help;
};

static const struct opt_doc run_opts[] = {
    {"rootfs", 1, OPT_ROOTFS, "DIR", "lower layer of the root filesystem; repeat to stack layers (later ones on top). Default: the 'default' image plus the kbox layer (see --image). Example: --rootfs /"},
    {"image", 1, OPT_IMAGE, "NAME", "use image NAME (built by 'kbox image build NAME') with the kbox layer (IPython startup helpers) above it; the default when no --rootfs is given is 'default'. Example: --image default"},
    {"startup-dir", 1, OPT_STARTUP_DIR, "DIR", "mount DIR read-only at " KBOX_USER_STARTUP_DIR "; IPython runs its *.py/*.ipy files (name order) after kbox's startup scripts (image + kbox layer only). Example: --startup-dir ./startup"},
    {"disk", 1, OPT_DISK, "SIZE", "size cap of the writable upper layer (tmpfs, discarded at exit), at least 1M. Default 512M. Example: --disk 1G"},
    {"workdir", 1, OPT_WORKDIR, "DIR", "share DIR read-write at the same path and make it the cwd. Example: --workdir \"$PWD\""},
    {"bind", 1, OPT_BIND, "SRC[:DST][:ro]", "bind-mount a host path into the sandbox (repeatable). Example: --bind /data:/mnt/data:ro"},
    {"net", 1, OPT_NET, "MODE", "network: 'none' (only lo, the default) or 'allow=RULE[,RULE...]' (HTTP/HTTPS through kbox's proxy to the hosts named; RULE = host, *.domain, host:port or *.domain:port; ports default to 443 and 80; repeatable; see docs/network.md). Example: --net allow=data.example.org,*.githubusercontent.com"},
    {"net-max-bytes", 1, OPT_NET_MAX_BYTES, "SIZE", "with --net allow: bytes the kernel may move through the proxy in all (both directions); then its connections are cut. Default: no limit. Example: --net-max-bytes 100M"},
    {"audit", 1, OPT_AUDIT, "FILE", "append one JSON line per event (start, each execute_request and its outcome, network decisions, limits, end) to FILE on the host; also KBOX_AUDIT. Read it with 'kbox audit show FILE'. Example: --audit /var/log/kbox/audit.jsonl"},
    {"env", 1, OPT_ENV, "KEY=VALUE", "set a variable for the workload (repeatable). Example: --env MPLBACKEND=Agg"},
    {"env-file", 1, OPT_ENV_FILE, "FILE", "read KEY=VALUE lines (dotenv format) for the workload. Example: --env-file ./sandbox.env"},
    {"user", 1, OPT_USER, "UID[:GID]", "identity inside the sandbox. Default 1000:100 (jovyan). Example: --user 1000:100"},
    {"hostname", 1, OPT_HOSTNAME, "NAME", "hostname inside (letters, digits, '-' and dots). Default: the sandbox id. Example: --hostname analysis"},
    {"id", 1, OPT_ID, "ID", "sandbox id (letters, digits, _ . -). Default: random. Example: --id job42"},
    {"timeout", 1, OPT_TIMEOUT, "SECONDS", "kill the sandbox after this wall-clock time; exit 124. Example: --timeout 30"},
    {"report", 1, OPT_REPORT, "FILE", "write a JSON verdict when the sandbox ends ('-' = stderr); its directory must exist. Example: --report verdict.json"},
    {"memory", 1, OPT_MEMORY, "SIZE", "memory limit, at least 16M. Default 1G. Example: --memory 2G"},
    {"swap", 1, OPT_SWAP, "SIZE", "swap allowed on top of --memory. Default 0. Example: --swap 512M"},
    {"pids", 1, OPT_PIDS, "N", "process/thread limit. Default 256. Example: --pids 64"},
    {"cpus", 1, OPT_CPUS, "FLOAT", "CPU bandwidth in CPUs. Default 1. Example: --cpus 0.5"},
    {"nofile", 1, OPT_NOFILE, "N", "open file limit (RLIMIT_NOFILE). Default 1024. Example: --nofile 4096"},
    {"cgroup-parent", 1, OPT_CGROUP_PARENT, "PATH", "create the sandbox cgroup under PATH (absolute, existing in every cgroup hierarchy used) instead of kbox's own cgroup; an error, not a fallback to rlimits, when kbox cannot create it there. Example: --cgroup-parent /kbox.slice"},
    {"require-limits", 0, OPT_REQUIRE_LIMITS, NULL, "fail instead of warning when a limit cannot be enforced by cgroups. Example: --require-limits --memory 2G"},
    {"profile", 1, OPT_PROFILE, "NAME|PATH", "security profile (seccomp, capabilities, default limits). Default 'default'. Example: --profile strict"},
    {"seccomp", 1, OPT_SECCOMP, "unconfined", "debugging only: run without a seccomp filter. Example: --seccomp=unconfined"},
    {"workdir-from-cwd", 0, OPT_WORKDIR_FROM_CWD, NULL, "like --workdir with the directory kbox was started in (for kernelspecs: a client's cwd=DIR becomes the kernel's cwd). Example: --workdir-from-cwd"},
    {"connection-file", 1, OPT_CONNECTION_FILE, "PATH", "kernel mode: use the ports/key of PATH if it exists (kernelspec launch), else write the connection info there (0600) once the kernel is ready. kbox run's options end here: what follows is for the kernel (--profile-dir DIR, --ipython-dir DIR, --Class.trait=value, IPKernelApp flags; channel and key arguments are refused). Example: --connection-file /tmp/k.json --profile-dir ~/.ipython/profile_agent"},
    {"ip", 1, OPT_IP, "ADDR", "kernel mode: address of the client-side channels (an ipc path prefix with --transport ipc). Default 127.0.0.1. Example: --ip 0.0.0.0"},
    {"transport", 1, OPT_TRANSPORT, "tcp|ipc", "kernel mode: transport of the client-side channels. Default tcp. Example: --transport ipc"},
    {"port-range", 1, OPT_PORT_RANGE, "LO..HI", "kernel mode: choose client-side tcp ports in this range. Default: any free port. Example: --port-range 9000..9100"},
    {"kernel-cmd", 1, OPT_KERNEL_CMD, "CMD", "kernel mode: kernel command inside the sandbox, {connection_file} is replaced. Default 'python3 -m ipykernel_launcher -f {connection_file}'. Example: --kernel-cmd '/usr/bin/python3 -m ipykernel_launcher -f {connection_file}'"},
    {"max-message", 1, OPT_MAX_MESSAGE, "SIZE", "kernel mode: drop Jupyter messages larger than this. Default 64M. Example: --max-message 16M"},
    {"insecure-no-key", 0, OPT_INSECURE_NO_KEY, NULL, "kernel mode: accept a --connection-file without a \"key\" (or an empty one): anyone who can reach the ports can run code. Example: --insecure-no-key"},
    {"exec-timeout", 1, OPT_EXEC_TIMEOUT, "SECONDS", "kernel mode: interrupt a cell running longer than this; kill the sandbox if it is still running after a grace period (exit 124). Example: --exec-timeout 120"},
    {"idle-timeout", 1, OPT_IDLE_TIMEOUT, "SECONDS", "kernel mode: shut the kernel down (exit 0) after this long with no client message while idle. Example: --idle-timeout 3600"},
    {"detach", 0, OPT_DETACH, NULL, "kernel mode: start in the background (kbox keeps supervising it), print the connection JSON once the kernel is ready and return; with --id, print the running kernel's connection JSON if it exists (get-or-create). See kbox ps / exec --id / kill. Example: kbox run --id s1 --detach"},
    {"cold", 0, OPT_COLD, NULL, "kernel mode: never start from a warm zygote (a fresh interpreter that imports everything itself; see docs/warm.md). Example: kbox exec --cold -c 1"},
    {"verbose", 0, OPT_VERBOSE, NULL, "log each setup step on stderr (repeat for more). Example: --verbose --verbose"},
    {"trace-setup", 0, OPT_TRACE_SETUP, NULL, "print on stderr the time each set-up step took (options and profile, cgroups, id maps, clone, mounts, cgroup attach, seccomp, exec), in kbox, the sandbox's pid 1 and the workload. Example: kbox run --rootfs / --trace-setup -- /bin/true"},
    {"help", 0, OPT_HELP, NULL, "show this help. Example: kbox run --help"},
};
#define N_RUN_OPTS (sizeof(run_opts) / sizeof(run_opts[0]))

void kbox_run_opts_help(FILE *out) {
  for (size_t i = 0; i < N_RUN_OPTS; i++) {
    char left[64];
    snprintf(left, sizeof(left), "--%s%s%s", run_opts[i].name, run_opts[i].has_arg ? " " : "",
             run_opts[i].has_arg ? run_opts[i].metavar : "");
    fprintf(out, "  %-28s %s\n", left, run_opts[i].help);
  }
}

/* --startup-dir DIR: a read-only bind at the fixed path the kbox layer's IPython config reads. */
static int add_startup_dir(struct kbox_spec *spec, const char *arg, kbox_error_t *err) {
  for (size_t i = 0; i < spec->sandbox.n_binds; i++)
    if (strcmp(spec->sandbox.binds[i].dst, KBOX_USER_STARTUP_DIR) == 0)
      return kbox_error_make(err, 0, "--startup-dir: given twice (put all startup files in one directory)");
  cleanup_free char *dir = realpath(arg, NULL);
  struct stat st;
  if (dir == NULL || stat(dir, &st) < 0) return kbox_error_make(err, errno, "--startup-dir: %s", arg);
  if (!S_ISDIR(st.st_mode)) return kbox_error_make(err, 0, "--startup-dir: %s is not a directory", arg);
  kbox_spec_add_bind(spec, dir, KBOX_USER_STARTUP_DIR, true);
  return 0;
}

/* The smallest --memory with which the sandbox can start at all (pid 1, mounts, exec). */
#define KBOX_MIN_MEMORY (16u << 20)

/* --rootfs DIR: stored as an absolute path (the layers are opened after kbox changed directory). */
int kbox_run_opts_add_rootfs(struct kbox_spec *spec, const char *arg, kbox_error_t *err) {
  char *dir = realpath(arg, NULL);
  if (dir == NULL) return kbox_error_make(err, errno, "--rootfs: %s", arg);
  kbox_strv_add_owned(&spec->sandbox.rootfs, dir);
  return 0;
}

int kbox_run_opts_set_workdir(struct kbox_spec *spec, const char *dir, kbox_error_t *err) {
  free(spec->sandbox.workdir);
  spec->sandbox.workdir = realpath(dir, NULL);
  return spec->sandbox.workdir != NULL ? 0 : kbox_error_make(err, errno, "--workdir: %s", dir);
}

int kbox_run_opts_set_id(struct kbox_spec *spec, const char *id, kbox_error_t *err) {
  if (kbox_validate_id("--id", id, err) < 0) return -1;
  free(spec->id);
  spec->id = xstrdup(id);
  spec->id_given = true;
  return 0;
}

/* --net none | allow=RULE[,RULE...] (rules checked now, so a kernelspec with a bad rule is refused
   at install time). */
static int parse_net(struct kbox_spec *spec, const char *arg, kbox_error_t *err) {
  spec->sandbox.net_set = true;
  if (strcmp(arg, "none") == 0) {
    spec->sandbox.net = KBOX_NET_NONE;
    kbox_strv_free(&spec->sandbox.net_allow);
    return 0;
  }
  char q[256];
  if (strncmp(arg, "allow=", 6) != 0)
    return kbox_error_make(err, 0, "--net: unknown mode '%s' (use none or allow=HOST[,HOST...], e.g. allow=data.example.org)",
                           kbox_quote(arg, q, sizeof(q)));
  struct kbox_net_rules r = {0};
  int rc = kbox_net_rules_parse(&r, arg + 6, "--net allow", err);
  kbox_net_rules_free(&r);
  if (rc < 0) return -1;
  spec->sandbox.net = KBOX_NET_ALLOW;
  kbox_strv_add(&spec->sandbox.net_allow, arg + 6);
  return 0;
}

/* Apply one parsed option to the spec. */
static int apply_opt(struct kbox_spec *spec, int id, const char *arg, bool *help_shown, kbox_error_t *err) {
  uint64_t u = 0;
  char q[256];
  switch (id) {
  case OPT_ROOTFS: return kbox_run_opts_add_rootfs(spec, arg, err);
  case OPT_COLD: spec->kernel.cold = true; return 0;
  case OPT_IMAGE: return kbox_image_add_layers(arg, &spec->sandbox.rootfs, err);
  case OPT_STARTUP_DIR: return add_startup_dir(spec, arg, err);
  case OPT_DISK:
    spec->limits.disk_set = true;
    return kbox_parse_size_min("--disk", arg, 1 << 20, "a tmpfs of size 0 would have no limit at all", &spec->limits.disk_bytes, err);
  case OPT_WORKDIR: return kbox_run_opts_set_workdir(spec, arg, err);
  case OPT_BIND: return kbox_spec_parse_bind(spec, arg, err);
  case OPT_NET: return parse_net(spec, arg, err);
  case OPT_NET_MAX_BYTES: return kbox_parse_size("--net-max-bytes", arg, &spec->sandbox.net_max_bytes, err);
  case OPT_AUDIT:
    if (arg[0] == '\0') return kbox_error_make(err, 0, "--audit: needs a file name");
    free(spec->audit_path);
    spec->audit_path = NULL;
    if (arg[0] != '/') { /* absolute, so a kernelspec finds the same file from any cwd */
      cleanup_free char *cwd = getcwd(NULL, 0);
      if (cwd == NULL) return kbox_error_make(err, errno, "--audit: cannot make %s absolute", arg);
      spec->audit_path = xasprintf("%s/%s", cwd, arg);
      return 0;
    }
    spec->audit_path = xstrdup(arg);
    return 0;
  case OPT_ENV: return kbox_env_parse_assignment("--env", arg, &spec->sandbox.env, err);
  case OPT_ENV_FILE: return kbox_envfile_load(arg, &spec->sandbox.env, err);
  case OPT_USER: return kbox_parse_user("--user", arg, &spec->sandbox.uid, &spec->sandbox.gid, err);
  case OPT_HOSTNAME:
    if (kbox_validate_hostname("--hostname", arg, err) < 0) return -1;
    free(spec->sandbox.hostname);
    spec->sandbox.hostname = xstrdup(arg);
    return 0;
  case OPT_ID: return kbox_run_opts_set_id(spec, arg, err);
  case OPT_TIMEOUT: return kbox_parse_seconds("--timeout", arg, &spec->limits.timeout_ms, err);
  case OPT_REPORT: free(spec->report_path); spec->report_path = xstrdup(arg); return 0;
  case OPT_MEMORY:
    spec->limits.memory_set = true;
    return kbox_parse_size_min("--memory", arg, KBOX_MIN_MEMORY, "the sandbox's own setup needs that much", &spec->limits.memory_bytes, err);
  case OPT_SWAP: spec->limits.swap_set = true; return kbox_parse_size("--swap", arg, &spec->limits.swap_bytes, err);
  case OPT_PIDS:
    if (kbox_parse_uint("--pids", arg, 1, 4194304, &u, err) < 0) return -1;
    spec->limits.pids = u;
    spec->limits.pids_set = true;
    return 0;
  case OPT_CPUS: spec->limits.cpus_set = true; return kbox_parse_double("--cpus", arg, 4096, &spec->limits.cpus, err);
  case OPT_NOFILE:
    if (kbox_parse_uint("--nofile", arg, 16, 1048576, &u, err) < 0) return -1;
    spec->limits.nofile = u;
    spec->limits.nofile_set = true;
    return 0;
  case OPT_CGROUP_PARENT: free(spec->limits.cgroup_parent); spec->limits.cgroup_parent = xstrdup(arg); return 0;
  case OPT_REQUIRE_LIMITS: spec->limits.require_limits = true; return 0;
  case OPT_PROFILE: free(spec->sec.profile); spec->sec.profile = xstrdup(arg); return 0;
  case OPT_SECCOMP:
    if (strcmp(arg, "unconfined") != 0)
      return kbox_error_make(err, 0, "--seccomp: only 'unconfined' is accepted (use --profile to choose a filter)");
    spec->sec.seccomp_unconfined = true;
    return 0;
  case OPT_WORKDIR_FROM_CWD:
    free(spec->sandbox.workdir);
    spec->sandbox.workdir = getcwd(NULL, 0);
    if (spec->sandbox.workdir == NULL) return kbox_error_make(err, errno, "--workdir-from-cwd: cannot read the current directory");
    return 0;
  case OPT_CONNECTION_FILE: free(spec->kernel.connection_file); spec->kernel.connection_file = xstrdup(arg); return 0;
  case OPT_IP:
    if (strlen(arg) == 0 || strlen(arg) > 200) return kbox_error_make(err, 0, "--ip: must be 1 to 200 characters");
    free(spec->kernel.ip);
    spec->kernel.ip = xstrdup(arg);
    return 0;
  case OPT_TRANSPORT:
    if (strcmp(arg, "tcp") != 0 && strcmp(arg, "ipc") != 0)
      return kbox_error_make(err, 0, "--transport: '%s' is not supported (use tcp or ipc)", kbox_quote(arg, q, sizeof(q)));
    free(spec->kernel.transport);
    spec->kernel.transport = xstrdup(arg);
    return 0;
  case OPT_PORT_RANGE: return kbox_parse_port_range("--port-range", arg, &spec->kernel.port_lo, &spec->kernel.port_hi, err);
  case OPT_KERNEL_CMD:
    if (strstr(arg, "{connection_file}") == NULL && strstr(arg, "{kbox_connection_file}") == NULL)
      return kbox_error_make(err, 0, "--kernel-cmd: '%s' has no {connection_file} placeholder", kbox_quote(arg, q, sizeof(q)));
    free(spec->kernel.cmd);
    spec->kernel.cmd = xstrdup(arg);
    return 0;
  case OPT_MAX_MESSAGE:
    if (kbox_parse_size("--max-message", arg, &spec->kernel.max_message, err) < 0) return -1;
    if (spec->kernel.max_message < 4096 || spec->kernel.max_message > (1ULL << 31))
      return kbox_error_make(err, 0, "--max-message: must be between 4K and 2G");
    return 0;
  case OPT_EXEC_TIMEOUT: return kbox_parse_seconds("--exec-timeout", arg, &spec->kernel.exec_timeout_ms, err);
  case OPT_IDLE_TIMEOUT: return kbox_parse_seconds("--idle-timeout", arg, &spec->kernel.idle_timeout_ms, err);
  case OPT_DETACH: spec->kernel.detach = true; return 0;
  case OPT_INSECURE_NO_KEY: spec->kernel.insecure_no_key = true; return 0;
  case OPT_VERBOSE: spec->verbosity++; return 0;
  case OPT_TRACE_SETUP: kbox_trace_enable(); return 0;
  case OPT_HELP: *help_shown = true; return 0;
  }
  return kbox_error_make(err, 0, "internal: unhandled option %d", id);
}

int kbox_run_opts_takes_arg(const char *name) {
  for (size_t i = 0; i < N_RUN_OPTS; i++)
    if (strcmp(run_opts[i].name, name) == 0) return run_opts[i].has_arg;
  return -1;
}

/* Kernel mode grammar: `kbox run [OPTIONS] [--connection-file FILE] [KERNEL ARGS...]`. The kernel's
   arguments start after --connection-file FILE (a kernelspec puts it last, and jupyter_client
   appends its extra_arguments after it) or at the first option kbox run does not know. */
static void take_kernel_args(struct kbox_spec *spec, int argc, char **argv, int from) {
  for (int i = from; i < argc; i++) kbox_strv_add(&spec->kernel.args, argv[i]);
}

/* Is there a "--" (a command follows) in argv[from..)? */
static bool command_follows(int argc, char **argv, int from) {
  for (int i = from; i < argc; i++)
    if (strcmp(argv[i], "--") == 0) return true;
  return false;
}

static bool is_run_option(const char *name) { return kbox_run_opts_takes_arg(name) >= 0; }

int kbox_run_opts_parse(int argc, char **argv, struct kbox_spec *spec, bool *help_shown, kbox_error_t *err) {
  struct option longopts[N_RUN_OPTS + 1];
  for (size_t i = 0; i < N_RUN_OPTS; i++)
    longopts[i] = (struct option){run_opts[i].name, run_opts[i].has_arg ? required_argument : no_argument,
                                  NULL, run_opts[i].id};
  memset(&longopts[N_RUN_OPTS], 0, sizeof(longopts[0]));
  *help_shown = false;
  char q[256];
  opterr = 0;
  optind = 1;
  for (;;) {
    int prev = optind;
    int c = getopt_long(argc, argv, "+:h", longopts, NULL);
    if (c == -1) break;
    if (c == 'h') c = OPT_HELP;
    if (c == ':')
      return kbox_error_make(err, 0, "option '%s' needs a value (see 'kbox %s --help')",
                             kbox_quote(argv[optind - 1], q, sizeof(q)), argv[0]);
    if (c == '?') {
      const char *bad = prev < argc ? argv[prev] : "?";
      if (prev >= argc || command_follows(argc, argv, prev) || strcmp(argv[0], "run") != 0)
        return kbox_error_make(err, 0, "unknown option '%s' (see 'kbox %s --help')", kbox_quote(bad, q, sizeof(q)), argv[0]);
      take_kernel_args(spec, argc, argv, prev); /* checked by kbox_run_opts_finish */
      return 0;
    }
    if (apply_opt(spec, c, optarg, help_shown, err) < 0) return -1;
    if (*help_shown) return 0;
    if (c == OPT_CONNECTION_FILE && optind < argc && strcmp(argv[0], "run") == 0) {
      take_kernel_args(spec, argc, argv, optind);
      return 0;
    }
  }
  for (int i = optind; i < argc; i++) kbox_strv_add(&spec->sandbox.argv, argv[i]);
  return 0;
}

int kbox_run_opts_finish(struct kbox_spec *spec, kbox_error_t *err) {
  if (spec->id == NULL) {
    char hex[13];
    if (kbox_random_hex(hex, 6, err) < 0) return -1;
    spec->id = xstrdup(hex);
  }
  if (spec->sandbox.hostname == NULL) spec->sandbox.hostname = xstrdup(spec->id);
  if (spec->sandbox.rootfs.n == 0 && kbox_image_add_layers("default", &spec->sandbox.rootfs, err) < 0) return -1;
  if (spec->sec.profile == NULL) spec->sec.profile = xstrdup("default");
  kbox_trace_step("options parsed");
  if (kbox_security_prepare(&spec->sec, err) < 0) return -1;
  kbox_security_fill_limits(&spec->sec, &spec->limits);
  kbox_security_fill_net(&spec->sec, &spec->sandbox, &spec->audit_path);
  kbox_trace_step("security profile loaded, seccomp filter ready");
  if (kbox_kernel_args_check(spec, is_run_option, err) < 0) return -1;
  const char *audit = getenv(KBOX_AUDIT_ENV);
  if (spec->audit_path == NULL && audit != NULL && audit[0] != '\0') spec->audit_path = xstrdup(audit);
  if (kbox_net_rules_check(&spec->sandbox.net_allow, "--net allow", err) < 0) return -1; /* rules of a profile */
  spec->rootless = geteuid() != 0; /* the one place: every verb that builds a spec finishes it here */
  if (kbox_spec_validate(spec, err) < 0) return -1;
  bool locked_mounts = spec->rootless || !kbox_mounts_in_initial_userns();
  return locked_mounts ? kbox_mounts_check_rootless_layers(spec, err) : 0;
}
