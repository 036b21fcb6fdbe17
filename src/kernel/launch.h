/* Kernel mode of `kbox run` (no CMD): the run directory, both connection files, the kernel
   command, the broker, and supervising the kernel until it ends. */
#ifndef KBOX_KERNEL_LAUNCH_H
#define KBOX_KERNEL_LAUNCH_H

#include <jansson.h>
#include <stdbool.h>

#include "kernel/broker.h"
#include "kernel/audit.h"
#include "kernel/connection.h"
#include "kernel/netpolicy.h"
#include "sandbox/sandbox.h"
#include "spec/spec.h"

/* Where the run directory appears inside the sandbox. */
#define KBOX_KERNEL_INNER_DIR "/run/kbox"

struct kbox_kernel {
  struct kbox_spec *spec;
  char *rundir;          /* BASE/ID, 0700, removed at exit */
  char *kdir;            /* RUNDIR/k, bind-mounted at KBOX_KERNEL_INNER_DIR */
  int run_lock;          /* flock()ed RUNDIR/lock: the run dir is alive (kernel/runlock.h) */
  int reaper_fd;         /* pipe to the run directory reaper (kernel/reaper.h), -1 */
  int out_fd;            /* kbox's real stdout (the sandbox's stdout goes to stderr) */
  struct kbox_conn host; /* what clients use */
  struct kbox_conn kern; /* the kernel's sockets, as host paths */
  bool conn_given;       /* --connection-file existed: kernelspec launch */
  bool conn_written;     /* kbox created --connection-file (removed at exit) */
  struct kbox_broker broker;
  bool broker_open;
  struct kbox_netpolicy net;   /* --net allow (kernel/netpolicy.h) */
  struct kbox_audit *audit;    /* --audit, NULL: off (kernel/audit.h) */
  const char *how;             /* how it was started, for the audit (NULL: from the spec) */
  /* Called once, in the supervise loop, when the kernel answered kernel_info and its connection
     info is out (printed, or written to --connection-file): readiness as an event. */
  void (*on_ready)(void *data);
  void *on_ready_data;

  /* outcome, for the report */
  const char *ended_by;  /* NULL: the kernel ended on its own */
  const char *start;     /* "fork" (warm, src/warm) or "cold" */
  long long started_ms, ready_ms;
  unsigned exec_interrupts;
  bool stragglers_killed; /* the kernel replied to shutdown_request; what still ran after the grace was killed */
};

/* Command mode with --net allow: only the run dir (for the proxy socket), bound at KBOX_KERNEL_INNER_DIR. */
int kbox_kernel_rundir_only(struct kbox_kernel *k, struct kbox_spec *spec, kbox_error_t *err);
/* Everything before the sandbox starts: run dir, connection files, kernel argv. */
int kbox_kernel_prepare(struct kbox_kernel *k, struct kbox_spec *spec, kbox_error_t *err);
/* The event loop (sandbox/supervise.c's, with the broker, its deadlines and signal handling as
   hooks); returns once the sandbox's pid 1 is reaped. */
void kbox_kernel_supervise(struct kbox_kernel *k, struct kbox_sandbox *sb, int sigfd);
/* The sentence saying how the kernel ended when it did not end cleanly; false: nothing to say. */
bool kbox_kernel_explain_end(const struct kbox_kernel *k, const struct kbox_sandbox *sb, char *buf, size_t n);
/* The "kernel" object of the --report verdict. */
json_t *kbox_kernel_report(const struct kbox_kernel *k);
/* kbox's exit code: the sandbox's, but 0 for a graceful shutdown whose stragglers kbox killed. */
int kbox_kernel_exit_code(const struct kbox_kernel *k, const struct kbox_sandbox *sb);
/* The verdict of such a shutdown says so (reason "shutdown", stragglers_killed) instead of "killed". */
void kbox_kernel_fix_verdict(const struct kbox_kernel *k, const struct kbox_sandbox *sb, json_t *r);
/* Remove everything kbox created (run dir, connection file it wrote); safe to call twice. */
/* Open the broker's sockets (host side bound, kernel side connecting). libzmq starts threads, so
   call this only AFTER the sandbox was cloned: a clone3 child of a threaded process may inherit a
   lock (malloc's) held by another thread and hang. */
int kbox_kernel_open_broker(struct kbox_kernel *k, kbox_error_t *err);
void kbox_kernel_cleanup(struct kbox_kernel *k);

#endif
