#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/kmod.h"
#include "cmd/run.h"
#include "cmd/run_opts.h"
#include "cgroup/limits.h"
#include "kernel/state.h"
#include "sandbox/init.h"
#include "sandbox/probe.h"
#include "sandbox/report.h"
#include "sandbox/sandbox.h"
#include "sandbox/supervise.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/trace.h"

static void run_usage(FILE *out) {
  fprintf(out,
          "Usage: kbox run [OPTIONS] -- CMD [ARGS...]\n"
          "       kbox run [OPTIONS]        (no CMD: a Jupyter kernel)\n"
          "Run CMD in a new sandbox (user, pid, mount, net, ipc, uts and cgroup namespaces, an overlay\n"
          "root whose writes vanish at exit, only loopback networking unless --net allow=...) and exit with\n"
          "its status.\n"
          "Without CMD, run an ipykernel in the sandbox and broker its channels: the connection JSON is\n"
          "printed on stdout (or written to --connection-file) once the kernel answers.\n\n"
          "Options:\n");
  kbox_run_opts_help(out);
  fprintf(out,
          "\nExit status: CMD's status, 128+N if CMD was killed by signal N, 124 when --timeout hit,\n"
          "125 when kbox itself failed, 126 when CMD cannot be executed, 127 when CMD is not found.\n\n"
          "Examples:\n"
          "  kbox run --rootfs / -- id\n"
          "  kbox run --workdir \"$PWD\" --timeout 60 --report - -- python3 analysis.py\n"
          "  kbox run --rootfs / --idle-timeout 600 > kernel.json\n");
}

void kbox_run_explain_end(const struct kbox_sandbox *sb) {
  char why[256];
  if (kbox_sandbox_explain_limits(sb, why, sizeof(why))) kbox_warn("%s", why);
}

void kbox_run_explain_command_end(const struct kbox_sandbox *sb) {
  char why[256];
  kbox_run_explain_end(sb);
  if (kbox_sandbox_explain_end(sb, "workload", why, sizeof(why))) kbox_warn("%s", why);
}

json_t *kbox_run_report(struct kbox_sandbox *sb, const struct kbox_error_s *setup_error) {
  return sb->spec->report_path != NULL ? kbox_report_build(sb, setup_error) : NULL;
}

void kbox_run_report_write(struct kbox_sandbox *sb, json_t *r) {
  if (r == NULL) return;
  kbox_error_t err = NULL;
  if (sb->spec->report_path != NULL && kbox_report_write(sb->spec->report_path, r, &err) < 0) kbox_error_report(&err);
  json_decref(r);
}

int kbox_cmd_run(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  struct kbox_spec spec;
  kbox_spec_init(&spec);
  bool help = false;
  int code = 0;
  if (kbox_run_opts_parse(argc, argv, &spec, &help, &err) < 0 ||
      (!help && kbox_run_opts_finish(&spec, &err) < 0)) {
    code = kbox_error_report(&err);
    kbox_spec_free(&spec);
    return code;
  }
  if (help) {
    run_usage(stdout);
    kbox_spec_free(&spec);
    return 0;
  }
  kbox_log_set_level(spec.verbosity >= 2 ? KBOX_LOG_DEBUG : spec.verbosity ? KBOX_LOG_INFO : KBOX_LOG_WARN);
  kbox_log_set_id(spec.id);
  if (spec.kernel.mode || spec.kernel.detach || spec.sandbox.net == KBOX_NET_ALLOW || spec.audit_path != NULL) {
    /* Kernel mode, and the host-side proxy and audit log of --net allow and --audit (which need
       libcrypto and threads), live in kbox-kernel.so (src/cmd/run_kernel.c), loaded only now. */
    const struct kbox_kmod *m = kbox_kmod_get();
    kbox_trace_step("kernel-mode module loaded (kbox-kernel.so and its libraries)");
    code = m != NULL ? m->run_kernel(&spec) : KBOX_EXIT_RUNTIME;
    kbox_spec_free(&spec);
    return code;
  }
  kbox_state_sweep(); /* stale run dirs of dead kernel-mode kbox processes (kernel mode sweeps when it makes its own) */
  cleanup_close int sigfd = kbox_sandbox_signalfd(&err);
  struct kbox_sandbox sb;
  if (sigfd < 0 || kbox_sandbox_start(&sb, &spec, &err) < 0) {
    if (sigfd >= 0) {
      kbox_probe_explain_failure(&spec, &err); /* name what the host refuses, as doctor does */
      kbox_run_report_write(&sb, kbox_run_report(&sb, err));
    }
    code = kbox_error_report(&err);
  } else {
    /* Like bubblewrap, return with the workload's status rather than after pid 1's namespaces
       are torn down; the report's rusage needs the reaping. */
    sb.leave_on_status = spec.report_path == NULL;
    kbox_sandbox_supervise(&sb, sigfd, NULL);
    kbox_trace_step(sb.released ? "sandbox released (pid 1 exiting, its cgroups left to the reaper)" : "sandbox ended (pid 1 reaped)");
    kbox_sandbox_kill(&sb);
    kbox_run_explain_command_end(&sb);
    kbox_run_report_write(&sb, kbox_run_report(&sb, NULL));
    code = kbox_sandbox_exit_code(&sb);
  }
  if (sigfd >= 0) kbox_sandbox_destroy(&sb);
  kbox_trace_step("sandbox removed (cgroups, reaper)");
  kbox_spec_free(&spec);
  return code;
}
