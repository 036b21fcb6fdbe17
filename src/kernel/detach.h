/* `kbox run --detach`: get-or-create a kernel by id, fork a background supervisor, hand the
   connection JSON to the caller once the kernel is ready. */
#ifndef KBOX_KERNEL_DETACH_H
#define KBOX_KERNEL_DETACH_H

#include "kernel/launch.h"
#include "spec/spec.h"
#include "util/error.h"

/* Call before anything starts. Returns 1 when this process is done (*code is its exit code: the
   connection JSON was printed, or the background kernel failed and its log was shown), 0 in the
   background supervisor (continue with kernel mode), -1 with err on failure. */
int kbox_detach_start(struct kbox_spec *spec, int *code, kbox_error_t *err);
/* Once the sandbox started: record the kernel's state (connection.json, pid, options) in its run
   directory for ps / exec --id / kill. Any kernel-mode run does this. */
void kbox_detach_record(struct kbox_kernel *k, pid_t sandbox_pid);
/* Once the sandbox ended (before it is destroyed): a kernel with a user-given id that died on its
   own (not asked to shut down, no clean exit) leaves its verdict for `kbox exec --id`
   (kbox_state_take_verdict): out of memory or crash. */
void kbox_detach_verdict(const struct kbox_kernel *k, const struct kbox_sandbox *sb);
/* At the end of a detached supervisor: drop its log (kept when the kernel never became ready:
   the waiting caller shows it). */
void kbox_detach_end(const struct kbox_kernel *k);

#endif
