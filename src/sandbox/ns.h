/* Creating the sandbox process: clone3 with namespace flags, a pidfd and an optional cgroup. */
#ifndef KBOX_NS_H
#define KBOX_NS_H

#include <sched.h>
#include <stdint.h>
#include <sys/types.h>
#include "util/error.h"

#define KBOX_NS_FLAGS_ALL                                                                      \
  (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |   \
   CLONE_NEWCGROUP)

/* fork-like clone3: returns 0 in the child, the pid in the parent (and *pidfd), -1 on error.
   cgroup_fd >= 0 places the child in that cgroup v2 directory at birth. */
pid_t kbox_clone3(uint64_t ns_flags, int cgroup_fd, int *pidfd, kbox_error_t *err);
/* Explain why creating namespaces failed (sysctls, missing support) as a hint on err. */
void kbox_ns_explain_failure(int errno_, kbox_error_t *err);

#endif
