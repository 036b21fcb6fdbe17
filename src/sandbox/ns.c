#include "sandbox/ns.h"

#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/proc.h"

pid_t kbox_clone3(uint64_t ns_flags, int cgroup_fd, int *pidfd, kbox_error_t *err) {
  struct clone_args args;
  memset(&args, 0, sizeof(args));
  args.flags = ns_flags | CLONE_PIDFD;
  args.pidfd = (uint64_t)(uintptr_t)pidfd;
  args.exit_signal = SIGCHLD;
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)cgroup_fd;
  }
  pid_t pid = kbox_clone3_raw(&args);
  if (pid < 0) {
    int e = errno;
    kbox_error_make(err, e, "creating the sandbox namespaces (clone3)");
    kbox_ns_explain_failure(e, err);
    return -1;
  }
  return pid;
}

/* Integer value of a sysctl file, or -1. */
static long read_sysctl(const char *path) {
  char *text = NULL;
  kbox_error_t ignored = NULL;
  if (kbox_read_file(path, 64, &text, NULL, &ignored) < 0) {
    kbox_error_free(&ignored);
    return -1;
  }
  long v = strtol(text, NULL, 10);
  free(text);
  return v;
}

void kbox_ns_explain_failure(int e, kbox_error_t *err) {
  if (read_sysctl("/proc/sys/user/max_user_namespaces") == 0) {
    kbox_error_hint(err, "user namespaces are disabled: sysctl user.max_user_namespaces is 0 (set it to e.g. 15000)");
    return;
  }
  if (getuid() != 0 && read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == 0) {
    kbox_error_hint(err, "unprivileged user namespaces are disabled: sysctl kernel.unprivileged_userns_clone is 0 (set it to 1, or run kbox as root)");
    return;
  }
  if (getuid() != 0 && read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1) {
    kbox_error_hint(err, "AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns=1); run as root or allow kbox in an AppArmor profile");
    return;
  }
  if (e == ENOSPC) kbox_error_hint(err, "a namespace limit was reached (see /proc/sys/user/max_*_namespaces)");
  else if (e == ENOSYS) kbox_error_hint(err, "the kernel has no clone3 (Linux >= 5.5 is needed)");
  else if (e == EPERM) kbox_error_hint(err, "namespaces are refused here (a container without privileges or a seccomp policy); run 'kbox doctor'");
}
