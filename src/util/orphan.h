/* A helper process nobody waits for, fed by a pipe: the cgroup and run-directory reapers. */
#ifndef KBOX_UTIL_ORPHAN_H
#define KBOX_UTIL_ORPHAN_H

#include <sys/types.h>

#include "util/error.h"

/* Run fn(read end of a new pipe, arg) in a grandchild (double fork: it is nobody's child to wait
   for, and outlives kbox) in a session of its own with every catchable signal but SIGCHLD ignored;
   fn must not return. Returns the intermediate child's pid (it exits at
   once; the caller reaps it) with the pipe's write end in *wfd, or -1 with err naming `what`. */
pid_t kbox_orphan_start(void (*fn)(int fd, void *arg), void *arg, const char *what, int *wfd, kbox_error_t *err);

#endif
