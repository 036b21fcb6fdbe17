/* The run-directory reaper of kernel mode: a small process that removes what a kernel-mode kbox
   leaves on the host when it dies without cleaning up (SIGKILL, crash): its run directory (which
   holds the connection key), the connection file it wrote, the socket files of --transport ipc,
   the detach log.

   kbox holds the write end of a pipe and tells the reaper about each thing before creating it;
   EOF on the pipe means kbox is gone. A normal exit has already removed everything, so the reaper
   finds nothing; after a SIGKILL it waits for the run lock to be free (the sandbox's pid 1, which
   shares it, dies right after kbox) and removes what is still there. */
#ifndef KBOX_KERNEL_REAPER_H
#define KBOX_KERNEL_REAPER_H

#include "kernel/connection.h"
#include "util/error.h"

/* Start the reaper for run directory RUNDIR (call before creating it, while kbox has no threads).
   Returns the pipe's write end (close-on-exec) or -1 with err. */
int kbox_kreaper_start(const char *rundir, kbox_error_t *err);
/* Reap the short-lived parents of the reapers started (kbox_kreaper_start does not wait for them). */
void kbox_kreaper_wait_started(void);
/* The run directory is not ours after all (another kbox holds its lock): leave it alone. */
void kbox_kreaper_forget_rundir(int fd);
/* A file of kbox's own (the detach log): removed. */
void kbox_kreaper_watch_file(int fd, const char *path);
/* The connection file kbox will write at PATH: removed if it still holds KEY (a file that a client
   replaced meanwhile is not ours to remove). */
void kbox_kreaper_watch_conn(int fd, const char *path, const char *key);
/* The host-side socket files of an ipc connection (IP-PORT for each channel): removed if they
   are still sockets. */
void kbox_kreaper_watch_ipc(int fd, const struct kbox_conn *host);
/* Remove the host-side ipc socket files now (normal end, once the broker is closed). */
void kbox_kreaper_unlink_ipc(const struct kbox_conn *host);

#endif
