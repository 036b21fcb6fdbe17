/* Reading and writing single cgroup control files relative to a cgroup directory. */
#ifndef KBOX_CGROUP_FILES_H
#define KBOX_CGROUP_FILES_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

/* Write a formatted value to DIR/FILE; the error names the file and value. */
int kbox_cg_write(const char *dir, const char *file, kbox_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Does DIR/FILE exist? */
bool kbox_cg_exists(const char *dir, const char *file);
/* First integer in DIR/FILE ("max" reads as INT64_MAX); false when absent or unreadable. */
bool kbox_cg_read_int(const char *dir, const char *file, int64_t *out);
/* Value of the "KEY N" line of DIR/FILE (memory.events, cpu.stat...); false when absent. */
bool kbox_cg_read_keyed(const char *dir, const char *file, const char *key, int64_t *out);

#endif
