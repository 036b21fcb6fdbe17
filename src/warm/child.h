/* The entry point of libkbox-warm.so (see child.c) and the messages it sends the host. */
#ifndef KBOX_WARM_CHILD_H
#define KBOX_WARM_CHILD_H

#include <stddef.h>

/* kbox_msg types on the kernel's channel, carrying a pidfd (SCM_RIGHTS). */
enum { KBOX_WARM_MSG_MIDDLE = 100, KBOX_WARM_MSG_PID1 = 101 };

/* Called by the zygote in a fresh fork with the request and its fds; returns 0 only in the kernel
   process (environment written to envbuf as NUL-separated K=V, ending with an empty string).
   Every other process it makes, and every failure, ends in _exit. */
int kbox_warm_child(const char *req, size_t len, const int *fds, int n_fds, char *envbuf, size_t envcap);

/* One --trace-setup line (a no-op unless the request asked for tracing). */
void kbox_warm_trace(const char *what);
int kbox_warm_tracing(void);

#endif
