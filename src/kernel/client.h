/* A small Jupyter client over wire.c: connect to a kernel's shell, iopub and control channels,
   wait until it answers, run code collecting a PyBoxOut, interrupt on timeout. */
#ifndef KBOX_KERNEL_CLIENT_H
#define KBOX_KERNEL_CLIENT_H

#include "kernel/connection.h"
#include "kernel/pyboxout.h"
#include "kernel/wire.h"
#include "util/error.h"

enum kbox_client_ch { KBOX_CL_SHELL, KBOX_CL_IOPUB, KBOX_CL_CONTROL, KBOX_CL_N };

struct kbox_client {
  void *ctx;
  void *sock[KBOX_CL_N];
  struct kbox_auth auth;
  bool auth_ok;
  char session[33];
  struct kbox_frames buf;
  unsigned long long max_message; /* the broker's --max-message (0: not known) */
};

/* How an execution ended. */
enum kbox_exec_end {
  KBOX_EXEC_OK,      /* the cell ran without error */
  KBOX_EXEC_RAISED,  /* the cell raised (out->error set) */
  KBOX_EXEC_TIMEOUT, /* ran past the timeout; interrupted and the kernel went idle again */
  KBOX_EXEC_STUCK,   /* ran past the timeout and did not stop after the interrupt */
  KBOX_EXEC_GONE,    /* the kernel (or its supervisor) went away */
  KBOX_EXEC_FAILED,  /* could not talk to the kernel (socket error) */
};

int kbox_client_open(struct kbox_client *c, const struct kbox_conn *conn, kbox_error_t *err);
void kbox_client_close(struct kbox_client *c);
/* Wait until the kernel answers kernel_info_request and iopub delivers its status (so no output
   of the next request can be missed). gone_fd (or -1): readable once the kernel is gone. */
int kbox_client_wait_ready(struct kbox_client *c, int timeout_ms, int gone_fd, kbox_error_t *err);
/* Run code; collect its outputs into out. On timeout send interrupt_request and wait up to
   grace_ms for the kernel to go idle. */
enum kbox_exec_end kbox_client_execute(struct kbox_client *c, const char *code, long long timeout_ms, int grace_ms,
                                       int gone_fd, struct kbox_pyboxout *out);
/* interrupt_request on control; 0 once interrupt_reply arrived within timeout_ms. */
int kbox_client_interrupt(struct kbox_client *c, int timeout_ms, kbox_error_t *err);

#endif
