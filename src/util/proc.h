/* The process system calls glibc does not wrap for kbox (pidfd_open, pidfd_send_signal, clone3,
   close_range), one wrapper each. Every wrapper is a single raw system call: async-signal-safe and
   allocation-free, so pid 1, forked children, reapers and signal paths may use them. Each returns
   what the system call returns (-1 with errno set on failure). Header-only on purpose: the
   wrappers inline into every library that includes them (kbox, the kernel module, the warm lib)
   without a source file to add to each one's build. */
#ifndef KBOX_PROC_H
#define KBOX_PROC_H

#include <linux/close_range.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* A pidfd for pid (flags: 0 or PIDFD_NONBLOCK). */
static inline int kbox_pidfd_open(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }

/* Send sig to the process behind pidfd (0 only checks that it is alive). */
static inline int kbox_pidfd_send_signal(int pidfd, int sig) {
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* clone3 with args: the child's pid in the parent, 0 in the child. */
static inline pid_t kbox_clone3_raw(struct clone_args *args) {
  return (pid_t)syscall(SYS_clone3, args, sizeof(*args));
}

/* close_range(first, last, flags) (flags: 0 or CLOSE_RANGE_CLOEXEC). */
static inline int kbox_close_range(unsigned first, unsigned last, unsigned flags) {
  return (int)syscall(SYS_close_range, first, last, flags);
}

/* Close every descriptor from first up, except keep (keep >= first). */
static inline void kbox_close_fds_except(unsigned first, int keep) {
  if ((unsigned)keep > first) kbox_close_range(first, (unsigned)keep - 1, 0);
  kbox_close_range((unsigned)keep + 1, ~0U, 0);
}

#endif
