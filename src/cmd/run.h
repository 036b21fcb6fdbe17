/* What command mode (cmd/run.c) and kernel mode (cmd/run_kernel.c) of `kbox run` share. */
#ifndef KBOX_CMD_RUN_H
#define KBOX_CMD_RUN_H

#include <jansson.h>

#include "sandbox/sandbox.h"

/* One log line when a cgroup limit ended the sandbox (memory, pids). */
void kbox_run_explain_end(const struct kbox_sandbox *sb);
/* Log in one line why a command-mode sandbox ended, when it was not the workload's own doing. */
void kbox_run_explain_command_end(const struct kbox_sandbox *sb);
/* The --report verdict of sb (NULL when no --report was asked for), to amend before writing. */
json_t *kbox_run_report(struct kbox_sandbox *sb, const struct kbox_error_s *setup_error);
/* Write that verdict (NULL: nothing) and free it. */
void kbox_run_report_write(struct kbox_sandbox *sb, json_t *r);

#endif
