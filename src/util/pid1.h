/* The one pid-1 routine (the sandbox's init, the entrypoint as a container's pid 1): every
   asynchronous signal is forwarded to the child, every exited process is reaped, and the child's
   end becomes an exit code the way a shell reports it (its status, or 128+signal). */
#ifndef KBOX_PID1_H
#define KBOX_PID1_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "util/error.h"

/* The signals pid 1 forwards: all but SIGCHLD (pid 1 reaps on it), SIGKILL and SIGSTOP (which
   cannot be caught), the synchronous ones a fault raises in pid 1 itself (SIGSEGV, SIGBUS, SIGFPE,
   SIGILL, SIGTRAP, SIGSYS, SIGABRT) and the terminal job-control ones (SIGTTIN, SIGTTOU). */
void kbox_pid1_forwarded(sigset_t *set);
/* Block SIGCHLD and the forwarded signals; returns a non-blocking close-on-exec signalfd for them. */
int kbox_pid1_signalfd(kbox_error_t *err);
/* Read what sfd holds: forward each signal to child, reap every exited process on SIGCHLD.
   Returns true (and child's wait status) once child was among the reaped. */
bool kbox_pid1_service(int sfd, pid_t child, int *status);
/* Forward and reap until child ends; returns its exit code (status, or 128+signal). */
int kbox_pid1_wait(int sfd, pid_t child);
/* A wait status as an exit code: the exit status, or 128+N when killed by signal N. */
int kbox_pid1_exit_code(int status);

#endif
