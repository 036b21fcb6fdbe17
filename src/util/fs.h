/* Small file helpers. */
#ifndef KBOX_FS_H
#define KBOX_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "util/error.h"

/* Open path read-only, refusing anything but a regular file without blocking on it (a FIFO with no
   writer, a device): the error names the path and what it is. Returns the fd or -1. */
int kbox_open_regular(const char *path, kbox_error_t *err);
int kbox_open_regular_at(int dirfd, const char *path, kbox_error_t *err);
/* Read a whole regular file (at most max bytes; larger is an error naming the limit) into a
   NUL-terminated buffer. */
int kbox_read_file(const char *path, size_t max, char **out, size_t *len, kbox_error_t *err);
/* Read fd to its end (at most max bytes; larger is an error naming the limit) into a NUL-terminated
   buffer, giving up (an error naming the limit) when the end has not come within timeout_ms (> 0;
   for pipes and standard input). name is used in errors. */
int kbox_read_fd_within(int fd, const char *name, size_t max, int timeout_ms, char **out, size_t *len, kbox_error_t *err);
/* Same with no time limit (files, memfds). */
int kbox_read_fd(int fd, const char *name, size_t max, char **out, size_t *len, kbox_error_t *err);
/* Same as kbox_read_file, relative to a directory fd. */
int kbox_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len, kbox_error_t *err);
/* Write a string to an existing file (e.g. /proc/PID/uid_map, cgroup files). */
int kbox_write_file(const char *path, const char *data, kbox_error_t *err);
int kbox_write_file_at(int dirfd, const char *path, const char *data, kbox_error_t *err);
/* mkdir -p, mode for created components. */
int kbox_mkdir_p(const char *path, mode_t mode, kbox_error_t *err);

#endif
