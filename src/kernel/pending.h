/* Requests clients sent on shell that the kernel has not finished (no reply or no status idle
   yet), so that when the kernel dies the broker can answer each one itself instead of leaving
   its client waiting until its own timeout. */
#ifndef KBOX_KERNEL_PENDING_H
#define KBOX_KERNEL_PENDING_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kernel/wire.h"

#define KBOX_PENDING_MAX 1024 /* beyond this the oldest entry is forgotten */

struct kbox_pending_req {
  void *ident;       /* routing identity (frames before the delimiter, first one) */
  size_t ident_len;
  json_t *header;    /* the request's header: the parent of every answer */
  char msg_id[64];
  bool execute;      /* an execute_request: answered with an error on iopub too */
  bool replied;      /* the kernel's reply went out (or none is due: comm messages) */
  bool idle;         /* status idle parented to it went out */
};

struct kbox_pending {
  struct kbox_pending_req *v;
  size_t n, cap;
};

/* A checked client message on shell (frames f, delimiter at delim): remember it. */
void kbox_pending_add(struct kbox_pending *p, const struct kbox_frames *f, size_t delim);
/* A reply from the kernel on shell: its parent got its answer. */
void kbox_pending_replied(struct kbox_pending *p, const struct kbox_frames *f, size_t delim);
/* Status idle on iopub parented to msg_id (raw JSON string span, no escapes). */
void kbox_pending_idle(struct kbox_pending *p, const char *msg_id, size_t n);
/* The kernel is gone: answer every pending request (error on iopub for executions, an error reply
   on shell to its client, then status idle), signed with auth. Returns how many were answered. */
size_t kbox_pending_answer(struct kbox_pending *p, void *shell, void *iopub, struct kbox_auth *auth,
                           const char *session, const char *ename, const char *evalue);
/* The header of pending request msg_id (borrowed), or NULL. */
json_t *kbox_pending_header(struct kbox_pending *p, const char *msg_id);
void kbox_pending_free(struct kbox_pending *p);

#endif
