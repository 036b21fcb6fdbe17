/* Kernel mode of `kbox run` (no CMD, or --detach): in kbox-kernel.so, entered from cmd/run.c once
   the options are parsed. */
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run.h"
#include "kernel/detach.h"
#include "kernel/launch.h"
#include "sandbox/probe.h"
#include "sandbox/sandbox.h"
#include "util/cleanup.h"
#include "util/log.h"

/* The kernel command could not be executed: that is kbox's configuration (--kernel-cmd), not a
   workload's exit status, so 125 with the option named (126/127 belong to `run -- CMD`). */
static void kernel_cmd_error(const struct kbox_spec *spec, kbox_error_t err) {
  if (err == NULL || (err->exit_code != KBOX_EXIT_NOTFOUND && err->exit_code != KBOX_EXIT_NOEXEC)) return;
  kbox_error_prefix(&err, "%s", spec->kernel_cmd != NULL ? "--kernel-cmd" : "the default kernel command (python3 -m ipykernel_launcher)");
  err->exit_code = KBOX_EXIT_RUNTIME;
}

/* The verdict with the kernel's part; a graceful shutdown whose stragglers kbox killed says so. */
static void write_report(struct kbox_sandbox *sb, const struct kbox_error_s *setup_error, const struct kbox_kernel *kern) {
  json_t *r = kbox_run_report(sb, setup_error);
  if (r == NULL) return;
  if (kern != NULL) {
    json_object_set_new(r, "kernel", kbox_kernel_report(kern));
    kbox_kernel_fix_verdict(kern, sb, r);
  }
  kbox_run_report_write(sb, r);
}

/* The kernel's sandbox, broker and supervision until the kernel ends; returns the exit code. */
static int run_kernel(struct kbox_kernel *kern, struct kbox_spec *spec, int sigfd) {
  kbox_error_t err = NULL;
  struct kbox_sandbox sb;
  int code;
  if (kbox_sandbox_start(&sb, spec, &err) < 0) {
    kbox_probe_explain_failure(spec, &err); /* name what the host refuses, as doctor does */
    kernel_cmd_error(spec, err);
    write_report(&sb, err, NULL);
    code = kbox_error_report(&err);
  } else if (kbox_kernel_open_broker(kern, &err) < 0) {
    kbox_sandbox_kill(&sb);
    write_report(&sb, err, NULL);
    code = kbox_error_report(&err);
  } else {
    /* Own process group: a client's killpg(SIGINT) reaches kbox only, which forwards it once. */
    setpgid(sb.pid, sb.pid);
    kbox_detach_record(kern, sb.pid); /* state for ps / exec --id / kill (src/kernel/state.c) */
    kbox_kernel_supervise(kern, &sb, sigfd);
    kbox_sandbox_kill(&sb);
    kbox_run_explain_end(&sb);
    kbox_kernel_explain_end(kern, &sb);
    write_report(&sb, NULL, kern);
    kbox_detach_verdict(kern, &sb); /* out of memory? for a kbox exec --id that saw it go */
    code = kbox_kernel_exit_code(kern, &sb);
  }
  kbox_sandbox_destroy(&sb);
  return code;
}

int kbox_cmd_run_kernel(struct kbox_spec *spec) {
  cleanup_error kbox_error_t err = NULL;
  int code = 0;
  /* --detach: get-or-create by id; the caller's process prints the connection JSON and returns while
     a background child goes on as the supervisor (src/kernel/detach.c). */
  if (spec->detach && kbox_detach_start(spec, &code, &err) != 0) return err != NULL ? kbox_error_report(&err) : code;
  cleanup_close int sigfd = kbox_sandbox_signalfd(&err);
  if (sigfd < 0) return kbox_error_report(&err);
  /* Run dir, connection files, broker sockets, kernel argv (src/kernel). */
  struct kbox_kernel kern = {0};
  if (kbox_kernel_prepare(&kern, spec, &err) < 0) code = kbox_error_report(&err);
  else code = run_kernel(&kern, spec, sigfd);
  if (spec->detach) kbox_detach_end(&kern);
  kbox_kernel_cleanup(&kern);
  return code;
}
