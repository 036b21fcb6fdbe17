/* The boundary between the kbox binary and kbox-kernel.so, the module that holds kernel mode
   (src/kernel, src/remote) and the verbs that talk to kernels. The binary dlopens it only when one
   of those runs, so command mode never maps libzmq, libcrypto or libcurl. The module calls the
   core (sandbox, cgroup, security, util) in the binary directly (the binary exports its symbols);
   only this table goes the other way. */
#ifndef KBOX_CMD_KMOD_H
#define KBOX_CMD_KMOD_H

#include "spec/spec.h"

#define KBOX_KMOD_NAME "kbox-kernel.so"
#define KBOX_KMOD_SYMBOL "kbox_kmod_entry"

struct kbox_kmod {
  const char *version; /* KBOX_VERSION the module was built as: must be the binary's */
  unsigned size;       /* sizeof(struct kbox_kmod) of the module's build */
  /* `kbox run` without CMD or with --detach, once the options are parsed (spec is owned by the
     caller, who frees it); returns the exit code. */
  int (*run_kernel)(struct kbox_spec *spec);
  int (*exec)(int argc, char **argv);
  int (*ps)(int argc, char **argv);
  int (*inspect)(int argc, char **argv);
  int (*interrupt)(int argc, char **argv);
  int (*kill)(int argc, char **argv);
  int (*entrypoint)(int argc, char **argv);
};

/* The module's table, loaded on first use; NULL after reporting why it cannot be loaded. */
const struct kbox_kmod *kbox_kmod_get(void);

/* Verb entry points in the binary that forward to the module (exit 125 when it is missing). */
int kbox_kmod_exec(int argc, char **argv);
int kbox_kmod_ps(int argc, char **argv);
int kbox_kmod_inspect(int argc, char **argv);
int kbox_kmod_interrupt(int argc, char **argv);
int kbox_kmod_kill(int argc, char **argv);
int kbox_kmod_entrypoint(int argc, char **argv);

#endif
