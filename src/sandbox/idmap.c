#include "sandbox/idmap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/parse.h"

int kbox_idmap_compute(const struct kbox_spec *spec, struct kbox_idmap *map, kbox_error_t *err) {
  memset(map, 0, sizeof(*map));
  if (spec->rootless) {
    snprintf(map->uid_map, sizeof(map->uid_map), "%u %u 1\n", spec->sandbox.uid, spec->host_uid);
    snprintf(map->gid_map, sizeof(map->gid_map), "%u %u 1\n", spec->sandbox.gid, spec->host_gid);
    map->deny_setgroups = true;
    return 0;
  }
  uint64_t base = KBOX_DEFAULT_ID_BASE;
  if (spec->sandbox.ns_flags != 0 && !(spec->sandbox.ns_flags & CLONE_NEWUSER)) return 0; /* no new userns: ids are not shifted (base 0) */
  const char *env = getenv("KBOX_ID_BASE");
  if (env != NULL && kbox_parse_uint("KBOX_ID_BASE", env, 1, 4294967295ULL - KBOX_ID_RANGE, &base, err) < 0)
    return -1;
  map->base = (uid_t)base;
  snprintf(map->uid_map, sizeof(map->uid_map), "0 %u %u\n", map->base, KBOX_ID_RANGE);
  snprintf(map->gid_map, sizeof(map->gid_map), "0 %u %u\n", map->base, KBOX_ID_RANGE);
  return 0;
}

int kbox_idmap_write(pid_t pid, const struct kbox_idmap *map, kbox_error_t *err) {
  char path[64];
  if (map->deny_setgroups) {
    snprintf(path, sizeof(path), "/proc/%d/setgroups", pid);
    if (kbox_write_file(path, "deny", err) < 0) return kbox_error_prefix(err, "writing user namespace maps");
  }
  snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
  if (kbox_write_file(path, map->gid_map, err) < 0) return kbox_error_prefix(err, "writing user namespace maps");
  snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
  if (kbox_write_file(path, map->uid_map, err) < 0) return kbox_error_prefix(err, "writing user namespace maps");
  return 0;
}

/* The holder of a user namespace: it only waits to be killed, by kbox or by kbox's death (a holder
   outliving a SIGKILLed kbox would keep copies of its fds: the cgroup reaper's pipe among them). */
static int userns_holder(void *arg) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != (pid_t)(intptr_t)arg) _exit(0); /* kbox died before the line above */
  for (;;) pause();
  return 0;
}

/* Holders killed but not yet reaped (their exit takes a while: waiting for it is left to
   kbox_idmap_reap_holders, off the start-up path), each with its small stack. */
enum { HOLDERS = 4, HOLDER_STACK = 16384 };
static struct {
  pid_t pid;
  _Alignas(64) char stack[HOLDER_STACK];
} holders[HOLDERS];

void kbox_idmap_reap_holders(void) {
  for (int i = 0; i < HOLDERS; i++) {
    if (holders[i].pid <= 0) continue;
    while (waitpid(holders[i].pid, NULL, 0) < 0 && errno == EINTR) {}
    holders[i].pid = 0;
  }
}

/* A free holder slot (reaping them all when none is). */
static int free_slot(void) {
  for (int i = 0; i < HOLDERS; i++)
    if (holders[i].pid == 0) return i;
  kbox_idmap_reap_holders();
  return 0;
}

/* A process born in a new user namespace, sharing our memory (CLONE_VM: no page tables to copy,
   unlike fork) and running on a small stack of its own; it exits only when killed. */
static pid_t clone_userns_holder(void *stack, size_t size) {
  return clone(userns_holder, (char *)stack + size, CLONE_VM | CLONE_NEWUSER | SIGCHLD, (void *)(intptr_t)getpid());
}

int kbox_idmap_userns_fd(const char *uid_map, const char *gid_map, kbox_error_t *err) {
  int slot = free_slot();
  pid_t pid = clone_userns_holder(holders[slot].stack, HOLDER_STACK);
  if (pid < 0) return kbox_error_make(err, errno, "creating a user namespace for an idmapped mount");
  int fd = -1;
  struct kbox_idmap m = {.deny_setgroups = false};
  snprintf(m.uid_map, sizeof(m.uid_map), "%s", uid_map);
  snprintf(m.gid_map, sizeof(m.gid_map), "%s", gid_map);
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
  if (kbox_idmap_write(pid, &m, err) == 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
    kbox_error_make(err, errno, "open %s", path);
  kill(pid, SIGKILL); /* the fd keeps the namespace; reaped by kbox_idmap_reap_holders */
  holders[slot].pid = pid;
  return fd;
}

int kbox_idmap_bind_owned(const char *path, const struct kbox_spec *spec, const struct kbox_idmap *map,
                          int *out_fd, kbox_error_t *err) {
  struct stat st;
  if (stat(path, &st) < 0) return kbox_error_make(err, errno, "stat %s", path);
  char um[64], gm[64];
  snprintf(um, sizeof(um), "%u %u 1\n", st.st_uid, map->base + spec->sandbox.uid);
  snprintf(gm, sizeof(gm), "%u %u 1\n", st.st_gid, map->base + spec->sandbox.gid);
  cleanup_close int userns = kbox_idmap_userns_fd(um, gm, err);
  if (userns < 0) return -1;
  cleanup_close int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (fd < 0) return kbox_error_make(err, errno, "open_tree %s", path);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                            .userns_fd = (uint64_t)userns};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
    kbox_error_make(err, errno, "idmapping %s (so the sandbox user's files belong to its owner, uid %u)", path, st.st_uid);
    return kbox_error_hint(err, "the filesystem of %s may not support idmapped mounts (needs Linux >= 5.12 and ext4/xfs/btrfs/tmpfs...); run kbox as the directory's owner instead", path);
  }
  *out_fd = steal_fd(fd);
  return 0;
}
