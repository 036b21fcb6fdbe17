#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run_opts.h"
#include "cgroup/limits.h"
#include "kernel/detach.h"
#include "kernel/guard.h"
#include "kernel/launch.h"
#include "sandbox/init.h"
#include "sandbox/report.h"
#include "sandbox/sandbox.h"
#include "util/cleanup.h"
#include "util/log.h"

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

/* Poll timeout until --timeout, or -1. Marks the sandbox timed out when the time has come. */
static int timeout_left(struct kbox_sandbox *sb) {
  if (sb->spec->timeout_ms == 0) return -1;
  long long left = (long long)sb->spec->timeout_ms - kbox_sandbox_elapsed_ms(sb);
  return left > 0 ? (int)left : 0;
}

/* Supervise until pid 1 is gone: forward signals, enforce --timeout, collect the status. */
static void supervise(struct kbox_sandbox *sb, int sigfd) {
  while (!sb->reaped) {
    struct pollfd fds[3] = {{.fd = sb->pidfd, .events = POLLIN}, {.fd = sigfd, .events = POLLIN},
                            {.fd = sb->chan, .events = POLLIN}};
    int n = poll(fds, sb->chan >= 0 ? 3 : 2, timeout_left(sb));
    if (n < 0 && errno != EINTR) break;
    if (n == 0 && sb->spec->timeout_ms != 0) {
      sb->timed_out = true;
      kbox_sandbox_kill(sb);
      break;
    }
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) == sizeof(si)) kbox_sandbox_signal(sb, (int)si.ssi_signo);
    if (sb->chan >= 0 && (fds[2].revents & (POLLIN | POLLHUP))) {
      kbox_error_t ignored = NULL;
      kbox_sandbox_on_message(sb, &ignored);
      kbox_error_free(&ignored);
    }
    if (fds[0].revents & POLLIN) kbox_sandbox_reap(sb);
  }
}

/* Say in one line why the sandbox ended, when it was not the workload's own doing. */
static void explain_end(const struct kbox_sandbox *sb, const struct kbox_kernel *kern) {
  char why[256];
  if (kbox_limits_explain(sb->cgroup, sb->spec, why, sizeof(why))) fprintf(stderr, "kbox: %s\n", why);
  if (kern != NULL) {
    kbox_kernel_explain_end(kern, sb);
    return;
  }
  if (sb->timed_out)
    fprintf(stderr, "kbox: the workload ran past --timeout %.3gs and was killed\n", (double)sb->spec->timeout_ms / 1000.0);
  else if (!sb->have_status)
    fprintf(stderr, "kbox: the sandbox's init process ended without reporting the workload's status\n");
}

/* Write --report if requested (the verdict also ends the --audit log and carries --net's counters). */
static void write_report(struct kbox_sandbox *sb, const struct kbox_error_s *setup_error, const struct kbox_kernel *kern,
                         struct kbox_kernel *guard) {
  if (sb->spec->report_path == NULL && !kbox_guard_active(guard)) return;
  json_t *r = kbox_report_build(sb, setup_error);
  if (kern != NULL) json_object_set_new(r, "kernel", kbox_kernel_report(kern));
  kbox_guard_end(guard, r);
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
  spec.rootless = geteuid() != 0;
  /* --detach: get-or-create by id; the caller's process prints the connection JSON and returns while
     a background child goes on as the supervisor (src/kernel/detach.c). */
  if (spec.detach && kbox_detach_start(&spec, &code, &err) != 0) {
    if (err != NULL) code = kbox_error_report(&err);
    kbox_spec_free(&spec);
    return code;
  }
  cleanup_close int sigfd = kbox_sandbox_signalfd(&err);
  struct kbox_sandbox sb;
  /* Kernel mode (no CMD): run dir, connection files, broker sockets, kernel argv (src/kernel). */
  struct kbox_kernel kernel = {0}, *kern = spec.kernel_mode ? &kernel : NULL;
  if (sigfd >= 0 && ((kern != NULL && kbox_kernel_prepare(kern, &spec, &err) < 0) ||
                     kbox_guard_prepare(&kernel, &spec, &err) < 0)) { /* --net allow, --audit */
    kbox_guard_cleanup(&kernel);
    kbox_kernel_cleanup(&kernel);
    code = kbox_error_report(&err);
    kbox_spec_free(&spec);
    return code;
  }
  if (sigfd < 0 || kbox_sandbox_start(&sb, &spec, &err) < 0) {
    if (sigfd >= 0) write_report(&sb, err, NULL, &kernel);
    code = kbox_error_report(&err);
  } else if ((kern != NULL && kbox_kernel_open_broker(kern, &err) < 0) || kbox_guard_start(&kernel, &sb, &err) < 0) {
    kbox_sandbox_kill(&sb);
    write_report(&sb, err, NULL, &kernel);
    code = kbox_error_report(&err);
  } else if (kern != NULL) {
    /* Own process group: a client's killpg(SIGINT) reaches kbox only, which forwards it once. */
    setpgid(sb.pid, sb.pid);
    kbox_detach_record(kern, sb.pid); /* state for ps / exec --id / kill (src/kernel/state.c) */
    kbox_kernel_supervise(kern, &sb, sigfd);
    kbox_sandbox_kill(&sb);
    explain_end(&sb, kern);
    write_report(&sb, NULL, kern, &kernel);
    code = kbox_sandbox_exit_code(&sb);
  } else {
    supervise(&sb, sigfd);
    kbox_sandbox_kill(&sb);
    explain_end(&sb, NULL);
    write_report(&sb, NULL, NULL, &kernel);
    code = kbox_sandbox_exit_code(&sb);
  }
  if (sigfd >= 0) kbox_sandbox_destroy(&sb);
  if (kern != NULL && spec.detach) kbox_detach_end(kern);
  kbox_guard_cleanup(&kernel);
  kbox_kernel_cleanup(&kernel); /* no-op when neither kernel mode nor --net allow made a run dir */
  kbox_spec_free(&spec);
  return code;
}
