/* The liveness lock of a run directory: DIR/lock, flock()ed by the kbox that owns DIR for its
   whole life. flock belongs to the open file description, so it is seen from every network,
   pid or mount namespace that shares the file system (an abstract unix socket is not: it lives
   in one network namespace), and the kernel drops it when the owner dies, even by SIGKILL. */
#ifndef KBOX_KERNEL_RUNLOCK_H
#define KBOX_KERNEL_RUNLOCK_H

#include <stdbool.h>

#include "util/error.h"

#define KBOX_RUNLOCK_NAME "lock"

/* Take DIR/lock (exclusive, not waiting), creating it when create is set. Returns the fd that
   holds it, or -1 with errno EWOULDBLOCK (someone holds it) or ENOENT (no DIR, or no lock file
   and !create). The fd is checked to be the file linked at DIR/lock now, so a lock taken on a
   file that a remover just unlinked never counts. */
int kbox_runlock_take(const char *dir, bool create);

/* The owner's side: create DIR (0700) if needed and take its lock, retrying briefly while
   another kbox is busy removing a stale DIR of the same name. Fails with a message naming the
   kbox that holds it. */
int kbox_runlock_acquire(const char *dir, kbox_error_t *err);

/* Is DIR/lock held by a live process (probe only: a shared lock, released at once)? */
bool kbox_runlock_held(const char *dir);

/* With the lock held (fd from take/acquire): remove everything in DIR but the lock file. */
void kbox_runlock_clear(const char *dir);

/* With the lock held: remove DIR entirely, the lock file last, then close fd. An owner that
   starts meanwhile either finds its lock file gone (and starts over) or keeps DIR alive, because
   rmdir fails on the lock file it created. */
void kbox_runlock_remove(const char *dir, int fd);

/* Remove every stale run directory (valid id, lock free) under base. */
void kbox_runlock_sweep(const char *base);
/* A kernel's run dir has its lock file, or (older kbox) its kernel dir k/ or connection.json;
   anything else under the base (the zygotes' warm/, a user's own files) is neither swept nor listed. */
bool kbox_runlock_is_run_dir(const char *dir);

#endif
