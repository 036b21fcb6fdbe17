/* The sandbox's pid 1: finish setup inside the namespaces, start the workload, reap, forward signals. */
#ifndef KBOX_INIT_H
#define KBOX_INIT_H

#include "sandbox/mounts.h"
#include "spec/spec.h"

struct kbox_init_args {
  const struct kbox_spec *spec;
  int chan;        /* channel to kbox on the host */
  struct kbox_mounts *mounts; /* detached source trees; opened by the host in root mode */
};

/* Runs in the freshly cloned child. Never returns. */
__attribute__((noreturn)) void kbox_init_main(struct kbox_init_args *args);

/* The steps of kbox_init_main, for a pid 1 made another way (src/warm): the in-namespace setup
   (hostname, loopback, mounts, pivot_root); taking the mapped root identity; the supervise loop. */
int kbox_init_setup(struct kbox_init_args *args, kbox_error_t *err);
int kbox_init_become_root(struct kbox_init_args *args, kbox_error_t *err);
__attribute__((noreturn)) void kbox_init_supervise(int chan, int sfd, pid_t workload);

/* pid 1's signals (util/pid1.h: SIGCHLD and every asynchronous one) blocked, read from the
   returned signalfd. */
int kbox_init_signalfd(kbox_error_t *err);

#endif
