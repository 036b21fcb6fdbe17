/* --net allow for a run: parse the rules, open the host-side proxy on RUNDIR/k/net.sock (bind-
   mounted at /run/kbox), give the workload its proxy environment, and carry the proxy's notices
   to the author of the code (the current cell's stderr in kernel mode, kbox's stderr otherwise). */
#ifndef KBOX_KERNEL_NETPOLICY_H
#define KBOX_KERNEL_NETPOLICY_H

#include <jansson.h>
#include <stdbool.h>

#include "kernel/audit.h"
#include "kernel/broker.h"
#include "net/proxy.h"
#include "net/rules.h"
#include "spec/spec.h"

#define KBOX_NET_DEFAULT_MAX_CONNS 64
#define KBOX_NET_IDLE_MS 60000
#define KBOX_NET_TOTAL_MS 3600000

struct kbox_netpolicy {
  bool on;
  struct kbox_net_rules rules;
  struct kbox_proxy *proxy;
  int notes[2];           /* kernel mode: proxy thread -> event loop, one line per notice */
  char pending[2048];     /* a partial line read from notes[0] */
  size_t pending_len;
};

/* Before the sandbox starts: proxy socket in kdir (host path), relay socket and env in spec. */
int kbox_netpolicy_prepare(struct kbox_netpolicy *np, struct kbox_spec *spec, const char *kdir, bool kernel_mode,
                           struct kbox_audit *audit, kbox_error_t *err);
/* After the sandbox was cloned: start the proxy thread. */
int kbox_netpolicy_start(struct kbox_netpolicy *np, kbox_error_t *err);
/* Kernel mode: the fd to poll (-1 when off) and what to do when it is readable (publish each line
   as stderr of the running cell). */
int kbox_netpolicy_fd(const struct kbox_netpolicy *np);
void kbox_netpolicy_service(struct kbox_netpolicy *np, struct kbox_broker *b);
/* Publish notices held while no cell ran (call when the loop has been idle a while). */
void kbox_netpolicy_flush_stale(struct kbox_netpolicy *np, struct kbox_broker *b);
/* Stop the proxy (counters stay); the "net" object of --report; free. */
void kbox_netpolicy_stop(struct kbox_netpolicy *np);
json_t *kbox_netpolicy_report(struct kbox_netpolicy *np);
void kbox_netpolicy_close(struct kbox_netpolicy *np);

#endif
