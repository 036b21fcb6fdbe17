/* --net allow and --audit around one `kbox run` (kernel and command mode): both need the run dir
   before the sandbox starts, a start after it was cloned, and the verdict at the end. */
#ifndef KBOX_KERNEL_GUARD_H
#define KBOX_KERNEL_GUARD_H

#include <jansson.h>
#include <stdbool.h>

#include "kernel/launch.h"
#include "sandbox/sandbox.h"

/* Before the sandbox starts (after kbox_kernel_prepare in kernel mode): open the audit log, make a
   run dir in command mode when --net allow needs one, open the proxy. */
int kbox_guard_prepare(struct kbox_kernel *k, struct kbox_spec *spec, kbox_error_t *err);
/* After the sandbox was cloned (and, in kernel mode, the broker opened): proxy thread, audit hooks,
   the kernel_start record. */
int kbox_guard_start(struct kbox_kernel *k, const struct kbox_sandbox *sb, kbox_error_t *err);
bool kbox_guard_active(const struct kbox_kernel *k);
/* Stop the proxy, add "net" and "audit" to the verdict, write the audit's last records. */
void kbox_guard_end(struct kbox_kernel *k, json_t *verdict);
void kbox_guard_cleanup(struct kbox_kernel *k);

#endif
