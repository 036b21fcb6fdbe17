/* Which cgroup layout this host has (v2, hybrid, v1) and which controllers kbox could use. */
#ifndef KBOX_CGROUP_PROBE_H
#define KBOX_CGROUP_PROBE_H

#include <stdbool.h>
#include <stddef.h>

enum kbox_cgroup_mode { KBOX_CGROUP_NONE, KBOX_CGROUP_V1, KBOX_CGROUP_HYBRID, KBOX_CGROUP_V2 };

enum kbox_cgroup_mode kbox_cgroup_mode(void);
const char *kbox_cgroup_mode_name(enum kbox_cgroup_mode mode);
/* One line for `kbox doctor`: mode and the controllers found; true when memory+pids+cpu are there. */
bool kbox_cgroup_probe_summary(char *buf, size_t n);

#endif
