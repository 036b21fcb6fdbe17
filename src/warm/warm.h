/* Warm starts of kernel-mode sandboxes: fork a kernel from a zygote that has already imported the
   data stack (see docs/warm.md). */
#ifndef KBOX_WARM_H
#define KBOX_WARM_H

#include "sandbox/sandbox.h"
#include "spec/spec.h"

/* Try to start spec's kernel from a zygote. Returns 2 when sb runs a kernel claimed from the pool
   ("pool": its run dir's kernel.json has the kernel's key), 1 when sb runs a warm kernel ("fork"), 0 when
   the caller must start it cold (one log line says why; a missing zygote is started in the
   background for the next kernel). Never fails otherwise: anything unexpected means cold. */
int kbox_warm_try(struct kbox_sandbox *sb, struct kbox_spec *spec);

#endif
