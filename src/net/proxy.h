/* The host-side HTTP proxy of --net allow: a unix socket in the kernel's run dir (reached from
   inside through the relay on 127.0.0.1), CONNECT for TLS and absolute-URI forwarding for plain
   HTTP, every name checked against the rules before it is resolved and every resolved address
   checked before it is connected. Runs in its own thread with non-blocking sockets and bounded
   buffers, connection count, per-connection time and total bytes. */
#ifndef KBOX_NET_PROXY_H
#define KBOX_NET_PROXY_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/rules.h"
#include "util/error.h"

/* Test-only: "name=addr,..." maps names to addresses instead of resolving them; a loopback
   address mapped this way is accepted (test servers live on 127.0.0.1), every other address
   goes through the same checks as resolved ones. Never set it outside tests. */
#define KBOX_TEST_RESOLVE_ENV "KBOX_TEST_RESOLVE"

struct kbox_proxy_config {
  const struct kbox_net_rules *rules; /* borrowed, must outlive the proxy */
  const char *sock_path;              /* unix socket to listen on */
  uid_t sock_uid;                     /* owner of the socket file (-1: leave) */
  gid_t sock_gid;
  uint64_t max_bytes;                 /* bytes through the proxy, both directions; 0: no limit */
  unsigned max_conns;                 /* open connections at once */
  unsigned idle_ms, total_ms;         /* per connection */
  int notify_fd;                      /* one line per refusal for the code's author (not owned) */
  /* Called in the proxy thread for each decision (allowed/blocked/limit); fields is borrowed. */
  void (*on_event)(void *ctx, const char *event, json_t *fields);
  void *event_ctx;
};

struct kbox_proxy;

/* Bind the socket (call before the sandbox starts, so it exists when the kernel first asks). */
int kbox_proxy_open(struct kbox_proxy **out, const struct kbox_proxy_config *cfg, kbox_error_t *err);
/* Start serving in a thread (call after the sandbox was cloned: see kbox_kernel_open_broker). */
int kbox_proxy_start(struct kbox_proxy *p, kbox_error_t *err);
/* Stop the thread, close every connection and the socket, free. NULL is fine. */
void kbox_proxy_close(struct kbox_proxy *p);
/* The "net" object of --report (call after kbox_proxy_close? no: before, it stops the thread). */
json_t *kbox_proxy_report(struct kbox_proxy *p);
/* Stop the thread (idempotent); counters stay readable. */
void kbox_proxy_stop(struct kbox_proxy *p);

#endif
