/* A one-shot kernel as a child process: `kbox run` in kernel mode started from this binary with
   its stdout on a pipe (the connection JSON), its --report and stderr in memfds. kbox exec uses
   it so that the sandbox, broker and supervision stay in one tested place. */
#ifndef KBOX_KERNEL_RUNCHILD_H
#define KBOX_KERNEL_RUNCHILD_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "kernel/connection.h"
#include "util/error.h"
#include "util/strv.h"

#define KBOX_RUN_CHILD_FAILED 125 /* the child's exit status when it could not exec kbox run */

struct kbox_run_child {
  pid_t pid;
  int pidfd;
  int report_fd; /* memfd the child's --report goes to */
  int err_fd;    /* memfd with the child's stderr */
  int status;
  bool reaped;
};

void kbox_run_child_init(struct kbox_run_child *ch);
/* Start `kbox run RUN_ARGS --report /proc/self/fd/N` and read its connection JSON into conn
   (within start_ms). On failure err says why the child ended (its last "error:" line). */
int kbox_run_child_start(struct kbox_run_child *ch, const struct kbox_strv *run_args, int start_ms,
                         struct kbox_conn *conn, kbox_error_t *err);
/* Shut the child down (SIGTERM: graceful kernel shutdown), kill it if it lingers, reap it. */
void kbox_run_child_stop(struct kbox_run_child *ch);
/* The child's --report verdict, or NULL. */
json_t *kbox_run_child_report(const struct kbox_run_child *ch);
/* Copy the child's stderr (its last 64 KiB, the kernel's own output included) to ours. */
void kbox_run_child_show_stderr(const struct kbox_run_child *ch);
void kbox_run_child_close(struct kbox_run_child *ch);

#endif
