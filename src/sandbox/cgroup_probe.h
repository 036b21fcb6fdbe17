/* The cgroup verdict of the host probe: create the sandbox cgroup and put a child in it, the way
   kbox_sandbox_start does (kbox_limits_setup, CLONE_INTO_CGROUP, kbox_cgroup_attach). */
#ifndef KBOX_CGROUP_PROBE_H
#define KBOX_CGROUP_PROBE_H

#include "sandbox/probe.h"

/* ok: every limit is carried by a cgroup; partial: some fall back to rlimits; missing: none. */
void kbox_probe_cgroup(struct kbox_verdict *v, const struct kbox_spec *spec);

#endif
