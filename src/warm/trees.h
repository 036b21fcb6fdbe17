/* Rootless warm starts: the mount trees a fork attaches, taken by a helper in namespaces of its own. */
#ifndef KBOX_WARM_TREES_H
#define KBOX_WARM_TREES_H

#include "sandbox/mounts.h"
#include "util/error.h"

/* Fill m's layer, bind and workdir trees (m initialised with no workdir tree) as kbox_mounts_open_sources
   would, from a child in a new user and mount namespace: unprivileged callers cannot clone trees of
   the host's mount namespace. */
int kbox_warm_open_trees(struct kbox_mounts *m, kbox_error_t *err);

#endif
