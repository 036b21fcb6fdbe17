/* The one supervise loop of a sandbox seen from the host: poll pid 1's pidfd, kbox's signalfd and
   pid 1's channel, pass signals on, enforce --timeout; kernel mode extends it through hooks (its
   broker's sockets, deadlines and signal handling, src/kernel/supervise.c). */
#ifndef KBOX_SANDBOX_SUPERVISE_H
#define KBOX_SANDBOX_SUPERVISE_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "sandbox/sandbox.h"

/* Most fds the hooks may add to one poll. */
#define KBOX_SUPERVISE_MAX_FDS 16

struct kbox_supervise_hooks {
  void *data;
  /* Before each poll: act on the deadlines that passed, put the fds to watch in fds[0..max) and
     return their count; set *wait_ms to the time until the next deadline (-1: none). */
  int (*prepare)(void *data, struct pollfd *fds, int max, long long *wait_ms);
  /* After each poll, before the signals are read: serve those fds (ready: what poll returned). */
  void (*service)(void *data, struct pollfd *fds, int n, int ready);
  /* A signal kbox received (NULL: pass it on to pid 1). */
  void (*on_signal)(void *data, int sig);
  /* --timeout passed: called before the sandbox is killed. */
  void (*on_timeout)(void *data);
};

/* Supervise sb until pid 1 is reaped. hooks may be NULL (command mode). */
void kbox_sandbox_supervise(struct kbox_sandbox *sb, int sigfd, const struct kbox_supervise_hooks *hooks);

/* The sentence saying why the sandbox ended when it was not its workload's doing (--timeout, pid 1
   gone without a status); who names the workload ("workload", "kernel"). False: nothing to say. */
bool kbox_sandbox_explain_end(const struct kbox_sandbox *sb, const char *who, char *buf, size_t n);
/* The sentence naming the cgroup limit that ended the sandbox (memory, pids), if one did. */
bool kbox_sandbox_explain_limits(const struct kbox_sandbox *sb, char *buf, size_t n);

#endif
