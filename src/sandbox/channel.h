/* Messages between kbox on the host and the sandbox's pid 1 (a SOCK_SEQPACKET socketpair). */
#ifndef KBOX_CHANNEL_H
#define KBOX_CHANNEL_H

#include "util/error.h"

enum kbox_msg_type {
  KBOX_MSG_GO = 1,    /* host -> pid1: id maps are written, go on */
  KBOX_MSG_ERROR,     /* pid1 -> host: a setup step failed (exit_code, errno_, text) */
  KBOX_MSG_STARTED,   /* pid1 -> host: the workload was executed (pid in `status`) */
  KBOX_MSG_EXITED,    /* pid1 -> host: the workload ended (wait status in `status`) */
  KBOX_MSG_JOINED,    /* host -> pid1: pid 1 is in all its cgroups; the workload may start */
  KBOX_MSG_ACHIEVED,  /* pid1 -> host, before STARTED: fallbacks taken (bitmask in `status`,
                         reasons in `text`, see sandbox/achieved.h) */
};

struct kbox_msg {
  int type;
  int exit_code;
  int errno_;
  int status;
  char text[1024];
};

int kbox_msg_send(int fd, int type, int status, kbox_error_t *err);
/* A message with a text (truncated to the message's text size). */
int kbox_msg_send_text(int fd, int type, int status, const char *text, kbox_error_t *err);
/* Send a setup failure to the host: the error's message and exit code. */
void kbox_msg_send_error(int fd, kbox_error_t *error);
/* Returns 1 with a message, 0 on EOF (peer gone), -1 on error. */
int kbox_msg_recv(int fd, struct kbox_msg *m, kbox_error_t *err);

#endif
