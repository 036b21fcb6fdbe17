/* The channel broker: host-side Jupyter sockets (what clients connect to) <-> the kernel's ipc
   sockets in the sandbox's run directory. Every message is checked, re-signed with the other
   side's key, and forwarded without blocking. */
#ifndef KBOX_KERNEL_BROKER_H
#define KBOX_KERNEL_BROKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <poll.h>
#include <stddef.h>
#include <zmq.h>

#include "kernel/connection.h"
#include "kernel/peers.h"
#include "kernel/pending.h"
#include "kernel/wire.h"
#include "util/clock.h"

struct kbox_audit;

#define KBOX_BROKER_NPOLL (2 * KBOX_CH_N)
#define KBOX_SHELL_WINDOW 8 /* shell requests inside the kernel at once: fair service between clients */

struct kbox_broker {
  void *ctx;
  void *host[KBOX_CH_N]; /* ROUTER shell/control/stdin/hb, XPUB iopub */
  void *kern[KBOX_CH_N]; /* DEALER shell/control/stdin/hb, SUB iopub */
  struct kbox_auth host_auth, kern_auth;
  size_t max_message;
  char session[33];
  char self_ident[24];   /* identity prefix of the broker's own requests */
  struct kbox_frames buf;
  int fd[KBOX_BROKER_NPOLL]; /* ZMQ_FD of host[0..N) then kern[0..N) */
  unsigned touched;          /* sockets used since their ZMQ_EVENTS was last read (bit = index) */
  unsigned recheck;          /* sockets to look at again before sleeping */
  size_t since_trim;         /* bytes received since the heap was last trimmed */
  long long last_rx_ms;      /* when a message was last received (any socket) */

  /* what the supervisor acts on */
  bool ready;                 /* the kernel answered our kernel_info_request */
  long long last_activity_ms; /* last client message (not heartbeats) or kernel going idle */
  bool busy;                  /* last execution_state seen on iopub */
  char exec_id[64];           /* msg_id of the execute_request running now ("" = none) */
  long long exec_started_ms;
  char *exec_parent;          /* header of that execute_request (JSON, as the kernel echoed it) */
  size_t exec_parent_len;
  /* Called when an execute_request's busy status arrives (exec_id just set) and when its idle
     arrives (before it is forwarded and exec_id cleared): kbox's notices for that cell (--net
     refusals) get the cell as parent and reach clients before the cell ends. */
  void (*exec_hook)(void *ctx, struct kbox_broker *b);
  void *exec_hook_ctx;
  bool exec_hook_due;
  struct kbox_audit *audit;   /* --audit: hooks per request/reply/output (kernel/audit.h), NULL: off */
  bool shutdown_replied;
  bool kernel_welcomes;       /* the kernel sent iopub_welcome (protocol 5.5): greet clients too */
  bool welcome_owed;          /* a client subscribed before we knew */
  struct kbox_pending pending; /* shell requests not finished yet (answered if the kernel dies) */
  struct kbox_peers peers;    /* connections per host port, capped (kernel/peers.h) */

  /* flow control (docs/kernel-broker.md) */
  struct kbox_frames pend[KBOX_CH_N]; /* a message waiting for its destination socket to take it */
  unsigned blocked;           /* bit ch: the source of pend[ch] is not read until pend[ch] went out */
  bool pend_counted;          /* pend[SHELL] is a request that takes a place in the shell window */
  unsigned shell_inflight;    /* shell requests the kernel has not answered yet */
  /* their msg_ids ("" = free; "?" = unreadable id, freed by a reset); room beyond the window for
     the broker's own requests, which do not wait for a place */
  char window_id[2 * KBOX_SHELL_WINDOW][64];
  long long kernel_heard_ms;  /* last message from the kernel (any channel) */
  long long last_service_ms;
  long long iopub_stall_ms;   /* since when host iopub cannot take more (0: it can) */
  bool iopub_slow;            /* a subscriber does not read: iopub is lossy for it */
  atomic_size_t iopub_queued; /* bytes of iopub messages libzmq still holds for subscribers */
  size_t iopub_peak;
  bool shutting_down;         /* a shutdown_request went to the kernel */
  char interrupted_id[64];    /* execute_request an interrupt_request was forwarded for */
  long long interrupted_ms;
  struct kbox_frames held_int; /* an interrupt_request held until its cell ran INTERRUPT_MIN_RUN_MS */
  enum kbox_channel held_int_ch;
  size_t held_int_delim;
  char held_int_exec[64];     /* the execute_request it was for */

  /* statistics */
  unsigned long long forwarded, dropped;
  unsigned long long slow_subscribers; /* episodes of an iopub subscriber that took nothing for SLOW_JOINER_MS */
  unsigned long long dropped_slow;     /* large iopub messages dropped for all: stuck subscribers held the hard budget */
  unsigned long long interrupts_answered; /* interrupt_requests answered by the broker (nothing to interrupt) */
  unsigned long long backpressure;   /* times a source was paused because its destination was full */
  unsigned long long lost_wakeups;   /* sweeps that found a readable socket whose ZMQ_FD had not fired */
  long long swept_ms;         /* last look at every socket (kbox_broker_service) */
};

/* Create the sockets: bind the host side per *host (ports 0 are chosen and written back; tcp ports
   come from [port_lo, port_hi] when port_lo > 0) and connect to the kernel per *kern. */
int kbox_broker_open(struct kbox_broker *b, struct kbox_conn *host, const struct kbox_conn *kern,
                     unsigned port_lo, unsigned port_hi, size_t max_message, kbox_error_t *err);
/* Close everything; linger_ms lets replies already queued (e.g. shutdown_reply) go out. */
void kbox_broker_close(struct kbox_broker *b, int linger_ms);
/* The event loop's side: fill pfd[0..KBOX_BROKER_NPOLL) with the sockets' ZMQ_FDs (edge-triggered
   wake-ups), then call kbox_broker_service with the poll results. It returns true while a socket
   may still hold messages (poll again with timeout 0). */
void kbox_broker_pollfds(struct kbox_broker *b, struct pollfd *pfd);
bool kbox_broker_service(struct kbox_broker *b, const struct pollfd *pfd, long long now_ms);
/* Fill items[0..KBOX_BROKER_NPOLL) for zmq_poll (simple loops: the final drain at exit). */
void kbox_broker_pollitems(struct kbox_broker *b, zmq_pollitem_t *items);
/* Handle what zmq_poll reported readable (a bounded batch per socket, so no one starves others). */
void kbox_broker_dispatch(struct kbox_broker *b, const zmq_pollitem_t *items, long long now_ms);
/* Send a request of the broker's own to the kernel (kernel_info_request, shutdown_request...). */
int kbox_broker_request(struct kbox_broker *b, enum kbox_channel ch, const char *msg_type, json_t *content);

/* Publish a stream message (name "stderr"/"stdout") on iopub to the clients, signed with their key
   and parented to the running execute_request, as if the cell had printed it (kbox's notices to
   the code's author, e.g. a blocked network request). */
void kbox_broker_publish_stream(struct kbox_broker *b, const char *name, const char *text);
/* When the broker next needs a call to kbox_broker_service even if no socket fires (0: never). */
long long kbox_broker_next_ms(const struct kbox_broker *b);
/* May a SIGINT reach the kernel now? Only while it runs a cell, not during start-up or shutdown,
   at most one per cell per second (a signal outside a cell can only hurt the kernel). */
bool kbox_broker_may_interrupt(struct kbox_broker *b, long long now_ms);
/* The broker's counters for the report's kernel section. */
json_t *kbox_broker_stats(const struct kbox_broker *b);

#endif
