/* The JSON verdict written by --report when a sandbox ends. */
#ifndef KBOX_REPORT_H
#define KBOX_REPORT_H

#include <jansson.h>
#include "sandbox/sandbox.h"

/* Build the verdict: id, exit, reason, times. Other modules add their keys to the object. When
   setup_error is given, the sandbox never ran: the verdict carries that error and its exit code. */
json_t *kbox_report_build(const struct kbox_sandbox *sb, const struct kbox_error_s *setup_error);
/* Write the verdict to a file (mode 0644) or to stderr for "-". */
int kbox_report_write(const char *path, json_t *report, kbox_error_t *err);
/* One line for a person when the workload did not simply exit (NULL when nothing to say). */
const char *kbox_report_reason(const struct kbox_sandbox *sb);

#endif
