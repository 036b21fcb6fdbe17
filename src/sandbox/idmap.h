/* User namespace id maps: who the sandbox's ids are on the host, and idmapped-mount helpers. */
#ifndef KBOX_IDMAP_H
#define KBOX_IDMAP_H

#include <stdbool.h>
#include <sys/types.h>
#include "spec/spec.h"

/* Host uid/gid that inside id 0 maps to when kbox runs as root (override: KBOX_ID_BASE). */
#define KBOX_DEFAULT_ID_BASE 1000000000u
#define KBOX_ID_RANGE 65536u

struct kbox_idmap {
  char uid_map[128];
  char gid_map[128];
  bool deny_setgroups;
  uid_t base; /* host id of inside id 0 (root mode) */
};

/* Root: inside 0..65535 -> host BASE..; rootless: only the sandbox user -> the caller. */
int kbox_idmap_compute(const struct kbox_spec *spec, struct kbox_idmap *map, kbox_error_t *err);
/* Write the maps of a freshly cloned child (from the parent, in the initial namespace). */
int kbox_idmap_write(pid_t pid, const struct kbox_idmap *map, kbox_error_t *err);
/* Make a user namespace with the given maps and return an fd to it (for MOUNT_ATTR_IDMAP). The
   process that held it is killed but left to kbox_idmap_reap_holders. */
int kbox_idmap_userns_fd(const char *uid_map, const char *gid_map, kbox_error_t *err);
/* Wait for the killed holders of kbox_idmap_userns_fd (once the sandbox is under way). */
void kbox_idmap_reap_holders(void);
/* Root mode only: a detached bind of `path` where files owned by the path's owner appear owned
   by the sandbox user, and the sandbox user's writes land as that owner. */
int kbox_idmap_bind_owned(const char *path, const struct kbox_spec *spec, const struct kbox_idmap *map,
                          int *out_fd, kbox_error_t *err);

#endif
