/* Connections per host port: libzmq has no limit of its own, so anyone who can reach a port could
   hold open-file descriptors of kbox without bound (and at the open-file limit libzmq stops
   accepting, locking every client out). A socket monitor per host socket follows each connection
   (by its file descriptor); past the cap, the oldest connection that never spoke (no validly
   signed message on shell/control/stdin, no subscription on iopub, no ping on hb) is cut with
   shutdown(2) (the new one itself when every other one has spoken), so idle or silent peers
   cannot push out the clients that work
   (docs/kernel-broker.md, "Keys, connections, file descriptors"). */
#ifndef KBOX_KERNEL_PEERS_H
#define KBOX_KERNEL_PEERS_H

#include <stdbool.h>
#include <stddef.h>

#include "kernel/connection.h"
#include "util/error.h"

#define KBOX_PEERS_MAX 256 /* connections per port (less when the open-file limit is low) */

struct kbox_peer {
  int fd;
  bool spoke; /* sent something the broker accepted: never cut to make room */
  bool cut;   /* shutdown(2) done, waiting for libzmq to say it closed */
};

struct kbox_peer_port {
  void *sock;             /* the host socket monitored (NULL: none) */
  void *mon;              /* our end of its monitor (PAIR) */
  struct kbox_peer *v;
  size_t n, cap;
  size_t open;            /* entries not cut */
  unsigned port;          /* tcp port, or ipc suffix */
  bool ipc;
  char path[108];         /* ipc socket path */
};

struct kbox_peers {
  struct kbox_peer_port ch[KBOX_CH_N];
  bool on;                /* opened (a zeroed struct is off) */
  int epfd;               /* readable when a monitor has events */
  size_t max;             /* the cap per port */
  unsigned long long cut; /* connections cut because their port was full */
};

/* Monitor the five host sockets (bound per conn) of context ctx. */
int kbox_peers_open(struct kbox_peers *p, void *ctx, void *const host[KBOX_CH_N], const struct kbox_conn *conn,
                    kbox_error_t *err);
/* The fd to poll for POLLIN (-1: none); then call kbox_peers_service. */
int kbox_peers_fd(const struct kbox_peers *p);
/* Read the monitors' events; cut connections past the cap. */
void kbox_peers_service(struct kbox_peers *p);
/* The connection with file descriptor fd (ZMQ_SRCFD of a message) on channel ch spoke. */
void kbox_peers_spoke(struct kbox_peers *p, enum kbox_channel ch, int fd);
/* Close the monitors (before the context is terminated). */
void kbox_peers_close(struct kbox_peers *p);

#endif
