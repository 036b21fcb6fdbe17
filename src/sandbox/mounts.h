/* The sandbox's filesystem: overlay rootfs, /proc, /dev, /tmp, shared paths, pivot_root. */
#ifndef KBOX_MOUNTS_H
#define KBOX_MOUNTS_H

#include <sys/types.h>
#include "sandbox/achieved.h"
#include "spec/spec.h"

struct kbox_mounts {
  const struct kbox_spec *spec;
  int workdir_fd;     /* detached tree for --workdir (idmapped by the parent in root mode), or -1 */
  int *lower_fds;     /* detached trees of the --rootfs layers */
  int layer_userns;   /* root mode: user namespace with the sandbox's id map, to idmap the layers
                         so on-disk ids appear unchanged inside (-1: layers are not idmapped) */
  int *bind_fds;      /* detached trees of the --bind sources */
  int *overlay_fds;   /* detached read-only trees of spec->overlays (profile dirs) */
  char root[64];      /* where the new root is assembled before pivot_root */
  int root_fd;        /* O_PATH fd of root once the overlay is there (mount points resolve in it), or -1 */
  char scratch[64];   /* the size-capped tmpfs holding upper, work, tmp, shm */
  char home[256];     /* the workload's HOME, set by kbox_mounts_home */
  struct kbox_achieved achieved; /* fallbacks taken while mounting (copied into pid 1 at clone) */
};

void kbox_mounts_init(struct kbox_mounts *m, const struct kbox_spec *spec, int workdir_fd);
void kbox_mounts_free(struct kbox_mounts *m);
/* Take detached copies of every host path the sandbox needs, before anything is mounted over them. */
int kbox_mounts_open_sources(struct kbox_mounts *m, kbox_error_t *err);
/* Private propagation, the scratch tmpfs and the overlay root. */
int kbox_mounts_rootfs(struct kbox_mounts *m, kbox_error_t *err);
/* /proc (with masked and read-only paths), /sys read-only, minimal /dev, /tmp. */
int kbox_mounts_system(struct kbox_mounts *m, kbox_error_t *err);
/* --workdir, --bind, then the overlays (host dir read-only below a tmpfs upper at the same path). */
int kbox_mounts_shared(struct kbox_mounts *m, kbox_error_t *err);
/* Find the workload user's home in the layers and create it, owned by the user, in the upper layer
   (called by kbox_mounts_rootfs before the overlay is mounted). */
int kbox_mounts_home(struct kbox_mounts *m, kbox_error_t *err);
/* Rootless or outside the initial user namespace: refuse layers that have mounts below them,
   with the reason and the fix. */
int kbox_mounts_check_rootless_layers(const struct kbox_spec *spec, kbox_error_t *err);
/* True in the host's initial user namespace (identity uid map, same namespace as /proc/1). */
bool kbox_mounts_in_initial_userns(void);
/* pivot_root into the new root and detach the old one. */
int kbox_mounts_pivot(struct kbox_mounts *m, kbox_error_t *err);

/* Inner paths masked or made read-only in /proc and /sys (exported for tests and doctor). */
extern const char *const kbox_masked_paths[];
extern const char *const kbox_readonly_paths[];

#endif
