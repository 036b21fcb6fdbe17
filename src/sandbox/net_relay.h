/* Inside the sandbox, for --net allow: a small relay (a child of pid 1, kbox code, started before
   the workload) that listens on 127.0.0.1:KBOX_NET_RELAY_PORT and forwards every connection to
   the host-side proxy's unix socket in the run dir. The sandbox's network stays lo only. */
#ifndef KBOX_NET_RELAY_H
#define KBOX_NET_RELAY_H

#include <sys/types.h>

#include "util/error.h"

#define KBOX_NET_RELAY_PORT 3128
#define KBOX_NET_PROXY_SOCK "net.sock" /* in the run dir (inside: /run/kbox/net.sock) */

/* Bind the relay's listening socket and fork the relay; returns its pid. sock_path: the proxy's
   socket as seen inside. */
pid_t kbox_net_relay_start(const char *sock_path, kbox_error_t *err);

#endif
