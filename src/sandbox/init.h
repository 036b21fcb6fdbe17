/* The sandbox's pid 1: finish setup inside the namespaces, start the workload, reap, forward signals. */
#ifndef KBOX_INIT_H
#define KBOX_INIT_H

#include "sandbox/mounts.h"
#include "sandbox/spec.h"

struct kbox_init_args {
  const struct kbox_spec *spec;
  int chan;        /* channel to kbox on the host */
  struct kbox_mounts *mounts; /* detached source trees; opened by the host in root mode */
};

/* Runs in the freshly cloned child. Never returns. */
__attribute__((noreturn)) void kbox_init_main(struct kbox_init_args *args);

/* Signals pid 1 forwards to the workload. */
extern const int kbox_forwarded_signals[];

#endif
