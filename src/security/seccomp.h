/* Compiling a profile's seccomp section to BPF (libseccomp) once, and installing it in the workload. */
#ifndef KBOX_SECCOMP_H
#define KBOX_SECCOMP_H

#include <linux/filter.h>
#include <stddef.h>

#include "security/profile.h"

/* Up to two programs, installed in order. The first (only when needed) holds the refusing rules that
   narrow a syscall the allow-list also allows (e.g. ioctl but not TIOCSTI): libseccomp cannot put
   both on one syscall, and the kernel applies the most restrictive answer of all filters. */
struct kbox_seccomp_compiled {
  struct sock_fprog progs[2];
  size_t n;
};

int kbox_seccomp_compile(const struct kbox_sc_def *def, struct kbox_seccomp_compiled *out, kbox_error_t *err);
/* Install the programs (no_new_privs must already be set). Async-signal-safe: no allocation. */
int kbox_seccomp_install(const struct kbox_seccomp_compiled *c, kbox_error_t *err);
void kbox_seccomp_compiled_free(struct kbox_seccomp_compiled *c);

#endif
