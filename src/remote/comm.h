/* Enterprise Gateway's comm port: one JSON request per TCP connection, {"signum": N} or
   {"shutdown": 1}. Non-blocking, driven from the caller's poll loop. */
#ifndef KBOX_REMOTE_COMM_H
#define KBOX_REMOTE_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include "util/error.h"

#define KBOX_COMM_MAX_REQUEST 1024 /* bytes; a longer request is logged and dropped */
#define KBOX_COMM_READ_MS 2000     /* how long one client may take to send its request */

/* Called for {"signum": N}; N is 0 for a liveness probe. Returns 0 when the kernel is alive. */
typedef int (*kbox_comm_signal_fn)(int signum, void *data);

struct kbox_comm {
  int fd;                 /* listening socket (non-blocking), -1 once stopped */
  unsigned port;
  kbox_comm_signal_fn on_signal;
  void *data;
  unsigned handled;       /* requests acted on */
  unsigned rejected;      /* malformed, oversized or unknown requests */
};

/* Listen on 0.0.0.0:port (port 0 = any). */
int kbox_comm_listen(struct kbox_comm *c, unsigned port, kbox_comm_signal_fn fn, void *data, kbox_error_t *err);
/* Call when fd is readable: accept and serve the pending connections. */
void kbox_comm_on_readable(struct kbox_comm *c);
/* Act on one request text (exported for the tests); returns 0 when understood. */
int kbox_comm_handle_request(struct kbox_comm *c, const char *text, size_t len);
void kbox_comm_close(struct kbox_comm *c);

#endif
