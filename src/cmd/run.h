/* What command mode (cmd/run.c) and kernel mode (cmd/run_kernel.c) of `kbox run` share. */
#ifndef KBOX_CMD_RUN_H
#define KBOX_CMD_RUN_H

#include <jansson.h>

#include "sandbox/sandbox.h"

/* One line on stderr when a cgroup limit ended the sandbox (memory, pids). */
void kbox_run_explain_end(const struct kbox_sandbox *sb);
/* Write --report if requested, with the "kernel" object KERNEL (taken over; NULL in command mode). */
void kbox_run_write_report(struct kbox_sandbox *sb, const struct kbox_error_s *setup_error, json_t *kernel);

#endif
