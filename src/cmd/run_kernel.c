/* Kernel mode of `kbox run` (no CMD, or --detach), and command mode with --net allow or --audit:
   in kbox-kernel.so, entered from cmd/run.c once the options are parsed. */
#include <stdio.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run.h"
#include "kernel/detach.h"
#include "kernel/guard.h"
#include "kernel/launch.h"
#include "sandbox/probe.h"
#include "sandbox/report.h"
#include "sandbox/sandbox.h"
#include "sandbox/supervise.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/trace.h"
#include "warm/pool.h"
#include "warm/warm.h"

/* The kernel command could not be executed: that is kbox's configuration (--kernel-cmd), not a
   workload's exit status, so 125 with the option named (126/127 belong to `run -- CMD`). */
static void kernel_cmd_error(const struct kbox_spec *spec, kbox_error_t err) {
  if (err == NULL || (err->exit_code != KBOX_EXIT_NOTFOUND && err->exit_code != KBOX_EXIT_NOEXEC)) return;
  kbox_error_prefix(&err, "%s", spec->kernel.cmd != NULL ? "--kernel-cmd" : "the default kernel command (python3 -m ipykernel_launcher)");
  err->exit_code = KBOX_EXIT_RUNTIME;
}

/* The verdict with the kernel's part (kern NULL in command mode), --net's counters and the end of the
   --audit log; a graceful shutdown whose stragglers kbox killed says so. */
static void write_report(struct kbox_sandbox *sb, const struct kbox_error_s *setup_error, const struct kbox_kernel *kern,
                         struct kbox_kernel *guard) {
  json_t *r = kbox_guard_active(guard) ? kbox_report_build(sb, setup_error) : kbox_run_report(sb, setup_error);
  if (r == NULL) return;
  if (kern != NULL) {
    json_object_set_new(r, "kernel", kbox_kernel_report(kern));
    kbox_kernel_fix_verdict(kern, sb, r);
  }
  kbox_guard_end(guard, r);
  kbox_run_report_write(sb, r);
}

/* A kernel claimed from the warm pool (src/warm/pool.c) brought its run dir and key: the broker
   signs for the kernel with that key, and its kernel.json names our id. */
static int adopt_pool_conn(struct kbox_kernel *k, kbox_error_t *err) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/kernel.json", k->kdir);
  struct kbox_conn inner;
  kbox_conn_init(&inner);
  if (kbox_conn_read(path, &inner, err) < 0 || kbox_conn_write(path, &inner, k->spec->id, false, err) < 0)
    return kbox_error_prefix(err, "the pool kernel's connection file");
  snprintf(k->kern.key, sizeof(k->kern.key), "%s", inner.key);
  snprintf(k->kern.scheme, sizeof(k->kern.scheme), "%s", inner.scheme);
  return 0;
}

/* A pool holder (src/warm/pool_hold.c): its fork is offered to claimers instead of served. */
static int hold_for_pool(struct kbox_sandbox *sb, struct kbox_spec *spec, int sigfd, bool warm) {
  if (!warm) {
    kbox_warn("warm pool: the pool kernel could not be forked");
    return KBOX_EXIT_RUNTIME;
  }
  int code = kbox_warm_pool_hold(sb, spec, sigfd);
  kbox_sandbox_destroy(sb);
  return code;
}

/* The sandbox, broker (kernel mode), proxy and audit log, supervised until the sandbox ends; returns
   the exit code. k holds the kernel (kernel mode) or only the --net/--audit guard (command mode). */
static int run_sandbox(struct kbox_kernel *k, struct kbox_spec *spec, int sigfd) {
  kbox_error_t err = NULL;
  struct kbox_kernel *kern = spec->kernel.mode ? k : NULL;
  struct kbox_sandbox sb;
  int code;
  /* Kernel mode starts from a warm zygote when it can, else cold (src/warm). */
  int how = kern != NULL ? kbox_warm_try(&sb, spec) : 0;
  bool warm = how >= 1;
  if (kern != NULL) kern->start = how == 2 ? "pool" : warm ? "fork" : "cold";
  if (kern != NULL && kbox_warm_pool_holder()) return hold_for_pool(&sb, spec, sigfd, warm);
  if (!warm && kbox_sandbox_start(&sb, spec, &err) < 0) {
    kbox_probe_explain_failure(spec, &err); /* name what the host refuses, as doctor does */
    if (kern != NULL) kernel_cmd_error(spec, err);
    write_report(&sb, err, NULL, k);
    code = kbox_error_report(&err);
  } else if ((how == 2 && adopt_pool_conn(kern, &err) < 0) || (kern != NULL && kbox_kernel_open_broker(kern, &err) < 0) ||
             (kbox_trace_step("broker open"), kbox_guard_start(k, &sb, &err) < 0)) {
    kbox_sandbox_kill(&sb);
    write_report(&sb, err, NULL, k);
    code = kbox_error_report(&err);
  } else if (kern != NULL) {
    /* Own process group: a client's killpg(SIGINT) reaches kbox only, which forwards it once. */
    setpgid(sb.pid, sb.pid);
    kbox_detach_record(kern, sb.pid); /* state for ps / exec --id / kill (src/kernel/state.c) */
    kbox_kernel_supervise(kern, &sb, sigfd);
    kbox_sandbox_kill(&sb);
    kbox_run_explain_end(&sb);
    char why[256];
    if (kbox_kernel_explain_end(kern, &sb, why, sizeof(why))) kbox_warn("%s", why);
    kbox_trace_step("kernel ended, broker closed");
    write_report(&sb, NULL, kern, k);
    kbox_trace_step("report written");
    kbox_detach_verdict(kern, &sb); /* out of memory? for a kbox exec --id that saw it go */
    code = kbox_kernel_exit_code(kern, &sb);
  } else {
    kbox_sandbox_supervise(&sb, sigfd, NULL);
    kbox_sandbox_kill(&sb);
    kbox_run_explain_command_end(&sb);
    write_report(&sb, NULL, NULL, k);
    code = kbox_sandbox_exit_code(&sb);
  }
  kbox_sandbox_destroy(&sb);
  kbox_trace_step("sandbox removed (cgroups, reapers)");
  return code;
}

int kbox_cmd_run_kernel(struct kbox_spec *spec) {
  cleanup_error kbox_error_t err = NULL;
  int code = 0;
  /* --detach: get-or-create by id; the caller's process prints the connection JSON and returns while
     a background child goes on as the supervisor (src/kernel/detach.c). */
  if (spec->kernel.detach && kbox_detach_start(spec, &code, &err) != 0) return err != NULL ? kbox_error_report(&err) : code;
  cleanup_close int sigfd = kbox_sandbox_signalfd(&err);
  if (sigfd < 0) return kbox_error_report(&err);
  /* Run dir, connection files, broker sockets, kernel argv (src/kernel); --net allow, --audit. */
  struct kbox_kernel kern = {0};
  if ((spec->kernel.mode && kbox_kernel_prepare(&kern, spec, &err) < 0) || kbox_guard_prepare(&kern, spec, &err) < 0)
    code = kbox_error_report(&err);
  else
    code = run_sandbox(&kern, spec, sigfd);
  if (spec->kernel.detach) kbox_detach_end(&kern);
  kbox_guard_cleanup(&kern);
  kbox_kernel_cleanup(&kern); /* no-op when neither kernel mode nor --net allow made a run dir */
  kbox_trace_step("run dir removed");
  return code;
}
