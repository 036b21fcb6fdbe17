#include "sandbox/mounts.h"

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/idmap.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/log.h"

const char *const kbox_masked_paths[] = {
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/proc/interrupts",
    "/proc/sysvipc", "/sys/firmware", "/sys/devices/virtual/powercap", "/sys/kernel/security",
    "/sys/kernel/debug", "/sys/fs/bpf", NULL};
const char *const kbox_readonly_paths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                            "/proc/sysrq-trigger", NULL};

void kbox_mounts_init(struct kbox_mounts *m, const struct kbox_spec *spec, int workdir_fd) {
  memset(m, 0, sizeof(*m));
  m->spec = spec;
  m->workdir_fd = workdir_fd;
  m->layer_userns = -1;
  m->root_fd = -1;
  snprintf(m->scratch, sizeof(m->scratch), "/tmp");
  snprintf(m->root, sizeof(m->root), "/tmp/root");
}

static void close_all(int *fds, size_t n) {
  for (size_t i = 0; fds != NULL && i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
  free(fds);
}

void kbox_mounts_free(struct kbox_mounts *m) {
  close_all(m->lower_fds, m->spec->sandbox.rootfs.n);
  close_all(m->bind_fds, m->spec->sandbox.n_binds);
  close_all(m->overlay_fds, m->spec->sandbox.overlays.n);
  if (m->workdir_fd >= 0) close(m->workdir_fd);
  if (m->layer_userns >= 0) close(m->layer_userns);
  if (m->root_fd >= 0) close(m->root_fd);
  m->lower_fds = m->bind_fds = m->overlay_fds = NULL;
  m->workdir_fd = m->layer_userns = m->root_fd = -1;
}

/* A detached copy of a host path (with the mounts below it when recursive). */
static int clone_tree_flags(const char *opt, const char *path, unsigned flags, int *out, kbox_error_t *err) {
  int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | flags);
  if (fd < 0) return kbox_error_make(err, errno, "%s: cannot take a copy of %s", opt, path);
  *out = fd;
  return 0;
}

static int clone_tree(const char *opt, const char *path, int *out, kbox_error_t *err) {
  return clone_tree_flags(opt, path, AT_RECURSIVE, out, err);
}

/* A rootfs layer: idmapped through the sandbox's user namespace when we can (root mode), so files
   owned by host root appear owned by root inside and copy-up works; else a plain recursive copy. */
static int open_layer(struct kbox_mounts *m, const char *path, int *out, kbox_error_t *err) {
  if (m->layer_userns < 0) return clone_tree("--rootfs", path, out, err);
  cleanup_close int fd = -1;
  if (clone_tree_flags("--rootfs", path, 0, &fd, err) < 0) return -1;
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)m->layer_userns};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
    kbox_info("--rootfs %s cannot be idmapped (%s): its files appear owned by nobody inside", path, strerror(errno));
    kbox_achieved_note(&m->achieved, KBOX_STEP_IDMAP, "idmapping a rootfs layer refused (%s): plain copy, files owned by nobody inside", strerror(errno));
    return clone_tree("--rootfs", path, out, err);
  }
  *out = steal_fd(fd);
  return 0;
}

/* Set mount attributes on a whole detached tree. */
static int set_attrs(int fd, const char *what, uint64_t attrs, kbox_error_t *err) {
  struct mount_attr attr = {.attr_set = attrs};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
    return kbox_error_make(err, errno, "setting mount flags on %s", what);
  return 0;
}

/* Lower trees of the overlays (profile dirs): as root, idmapped so the directory's owner is the
   sandbox user (as for --workdir); read-only either way, the writes go to the overlay's upper. */
static int open_overlay_sources(struct kbox_mounts *m, kbox_error_t *err) {
  const struct kbox_spec *s = m->spec;
  m->overlay_fds = xcalloc(s->sandbox.overlays.n + 1, sizeof(int));
  for (size_t i = 0; i < s->sandbox.overlays.n; i++) m->overlay_fds[i] = -1;
  struct kbox_idmap map;
  bool idmap = !s->rootless && m->layer_userns >= 0 && kbox_idmap_compute(s, &map, err) == 0;
  for (size_t i = 0; i < s->sandbox.overlays.n; i++) {
    const char *dir = s->sandbox.overlays.v[i];
    if (idmap && kbox_idmap_bind_owned(dir, s, &map, &m->overlay_fds[i], err) < 0) {
      kbox_info("%s cannot be idmapped (%s): its files appear owned by nobody inside", dir, (*err)->msg);
      kbox_error_free(err);
    }
    if (m->overlay_fds[i] < 0 && clone_tree("--profile-dir", dir, &m->overlay_fds[i], err) < 0) return -1;
    if (set_attrs(m->overlay_fds[i], dir, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err) < 0) return -1;
  }
  return 0;
}

int kbox_mounts_open_sources(struct kbox_mounts *m, kbox_error_t *err) {
  const struct kbox_spec *s = m->spec;
  m->lower_fds = xcalloc(s->sandbox.rootfs.n + 1, sizeof(int));
  m->bind_fds = xcalloc(s->sandbox.n_binds + 1, sizeof(int));
  for (size_t i = 0; i < s->sandbox.rootfs.n; i++) m->lower_fds[i] = -1;
  for (size_t i = 0; i < s->sandbox.n_binds; i++) m->bind_fds[i] = -1;
  for (size_t i = 0; i < s->sandbox.rootfs.n; i++)
    if (open_layer(m, s->sandbox.rootfs.v[i], &m->lower_fds[i], err) < 0) return -1;
  for (size_t i = 0; i < s->sandbox.n_binds; i++) {
    if (clone_tree("--bind", s->sandbox.binds[i].src, &m->bind_fds[i], err) < 0) return -1;
    uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (s->sandbox.binds[i].ro ? MOUNT_ATTR_RDONLY : 0);
    if (set_attrs(m->bind_fds[i], s->sandbox.binds[i].src, attrs, err) < 0) return -1;
  }
  if (s->sandbox.workdir != NULL && m->workdir_fd < 0) {
    if (clone_tree("--workdir", s->sandbox.workdir, &m->workdir_fd, err) < 0) return -1;
    if (set_attrs(m->workdir_fd, s->sandbox.workdir, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err) < 0) return -1;
  }
  return open_overlay_sources(m, err);
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                    const char *data, kbox_error_t *err) {
  if (mount(src, dst, type, flags, data) < 0)
    return kbox_error_make(err, errno, "mount %s on %s (%s)", src ? src : "none", dst, type ? type : "bind");
  return 0;
}

/* Attach a detached tree at an absolute path. */
static int attach(int fd, const char *dst, kbox_error_t *err) {
  if (syscall(SYS_move_mount, fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    return kbox_error_make(err, errno, "attaching a mount at %s", dst);
  return 0;
}

/* Create (like mkdir -p / touch) PATH inside the new root without following symlinks out of it,
   and return its real location as a string usable by mount(2) ("/proc/self/fd/N"). */
static int make_target(struct kbox_mounts *m, const char *path, bool dir, int *out_fd, kbox_error_t *err) {
  if (m->root_fd < 0 && (m->root_fd = open(m->root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    return kbox_error_make(err, errno, "open %s", m->root);
  cleanup_free char *copy = xstrdup(path);
  cleanup_close int cur = -1;
  char *save = NULL;
  char *tok = strtok_r(copy, "/", &save);
  if (tok == NULL && (cur = dup(m->root_fd)) < 0) return kbox_error_make(err, errno, "dup");
  while (tok != NULL) {
    char *next = strtok_r(NULL, "/", &save);
    int at = cur >= 0 ? cur : m->root_fd;
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    int fd = (int)syscall(SYS_openat2, at, tok, &how, sizeof(how));
    if (fd < 0 && errno == ENOENT) {
      int rc = (next != NULL || dir) ? mkdirat(at, tok, 0755) : 0;
      if (next == NULL && !dir) {
        int f = openat(at, tok, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        rc = f < 0 ? -1 : close(f);
      }
      if (rc < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating mount point %s", path);
      fd = (int)syscall(SYS_openat2, at, tok, &how, sizeof(how));
    }
    if (fd < 0) return kbox_error_make(err, errno, "resolving mount point %s", path);
    if (cur >= 0) close(cur);
    cur = fd;
    tok = next;
  }
  *out_fd = steal_fd(cur);
  return 0;
}

/* Path string for an O_PATH fd, for syscalls that take paths. */
static void fd_path(int fd, char *buf, size_t n) { snprintf(buf, n, "/proc/self/fd/%d", fd); }

/* Attach a detached tree at PATH inside the new root (creating the mount point). */
static int attach_inside(struct kbox_mounts *m, int treefd, const char *path, kbox_error_t *err) {
  struct stat st;
  if (fstat(treefd, &st) < 0) return kbox_error_make(err, errno, "stat %s", path);
  cleanup_close int target = -1;
  if (make_target(m, path, S_ISDIR(st.st_mode), &target, err) < 0) return -1;
  if (syscall(SYS_move_mount, treefd, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    return kbox_error_make(err, errno, "mounting %s", path);
  return 0;
}

int kbox_mounts_rootfs(struct kbox_mounts *m, kbox_error_t *err) {
  const struct kbox_spec *s = m->spec;
  if (do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, err) < 0)
    return kbox_error_prefix(err, "making mounts private");
  char opts[96];
  snprintf(opts, sizeof(opts), "size=%llu,mode=0755", (unsigned long long)s->limits.disk_bytes);
  if (do_mount("kbox", m->scratch, "tmpfs", MS_NOSUID | MS_NODEV, opts, err) < 0) return -1;
  cleanup_free char *lowers = xcalloc(s->sandbox.rootfs.n + 1, 81);
  static const char *const dirs[] = {"upper", "work", "root", "tmp", "shm", "lower"};
  for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", m->scratch, dirs[i]);
    if (mkdir(p, strcmp(dirs[i], "tmp") == 0 || strcmp(dirs[i], "shm") == 0 ? 01777 : 0755) < 0)
      return kbox_error_make(err, errno, "mkdir %s", p);
    if (dirs[i][0] == 't' || dirs[i][0] == 's') chmod(p, 01777);
  }
  /* Overlay lists the top layer first; --rootfs given later stacks higher. */
  for (size_t k = s->sandbox.rootfs.n; k-- > 0;) {
    char p[80];
    snprintf(p, sizeof(p), "%.40s/lower/%zu", m->scratch, k);
    if (mkdir(p, 0755) < 0) return kbox_error_make(err, errno, "mkdir %s", p);
    if (attach(m->lower_fds[k], p, err) < 0) return -1;
    close(m->lower_fds[k]);
    m->lower_fds[k] = -1;
    if (lowers[0] != '\0') strcat(lowers, ":");
    strcat(lowers, p);
  }
  if (kbox_mounts_home(m, err) < 0) return -1;
  cleanup_free char *ovl = NULL;
  ovl = xasprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work,userxattr", lowers, m->scratch, m->scratch);
  if (do_mount("overlay", m->root, "overlay", MS_NOSUID | MS_NODEV, ovl, err) < 0)
    return kbox_error_prefix(err, "assembling the overlay root");
  return 0;
}

/* Mount a fresh filesystem at PATH inside the new root. */
static int mount_inside(struct kbox_mounts *m, const char *src, const char *path, const char *type,
                        unsigned long flags, const char *data, kbox_error_t *err) {
  cleanup_close int target = -1;
  if (make_target(m, path, true, &target, err) < 0) return -1;
  char p[64];
  fd_path(target, p, sizeof(p));
  if (mount(src, p, type, flags, data) < 0) return kbox_error_make(err, errno, "mounting %s on %s", type ? type : src, path);
  return 0;
}

/* Hide PATH (inside the new root) if it exists: an empty read-only tmpfs or /dev/null on top. The
   first masked directory gets the tmpfs; the others a bind of it (the same empty read-only,
   nosuid, nodev, noexec mount, without a superblock each). *first: that first one, or "". */
static int mask_path(struct kbox_mounts *m, const char *path, char first[512], kbox_error_t *err) {
  char full[512];
  snprintf(full, sizeof(full), "%s%s", m->root, path);
  struct stat st;
  if (lstat(full, &st) < 0) return 0;
  if (!S_ISDIR(st.st_mode)) return do_mount("/dev/null", full, NULL, MS_BIND, NULL, err);
  if (first[0] != '\0') return do_mount(first, full, NULL, MS_BIND, NULL, err);
  if (do_mount("masked", full, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0", err) < 0) return -1;
  snprintf(first, 512, "%s", full);
  return 0;
}

/* Bind PATH (inside the new root) onto itself read-only, if it exists. */
static int readonly_path(struct kbox_mounts *m, const char *path, kbox_error_t *err) {
  char full[512];
  snprintf(full, sizeof(full), "%s%s", m->root, path);
  if (access(full, F_OK) < 0) return 0;
  if (do_mount(full, full, NULL, MS_BIND | MS_REC, NULL, err) < 0) return -1;
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
  if (syscall(SYS_mount_setattr, AT_FDCWD, full, AT_RECURSIVE, &attr, sizeof(attr)) < 0)
    return kbox_error_make(err, errno, "making %s read-only", path);
  return 0;
}

static int mount_dev(struct kbox_mounts *m, kbox_error_t *err) {
  if (mount_inside(m, "kbox-dev", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536", err) < 0) return -1;
  static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
    char host[64], inner[64], p[64];
    snprintf(host, sizeof(host), "/dev/%s", nodes[i]);
    snprintf(inner, sizeof(inner), "/dev/%s", nodes[i]);
    cleanup_close int target = -1;
    if (make_target(m, inner, false, &target, err) < 0) return -1;
    fd_path(target, p, sizeof(p));
    if (do_mount(host, p, NULL, MS_BIND, NULL, err) < 0) return -1;
  }
  if (mount_inside(m, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", err) < 0)
    return -1;
  static const char *const links[][2] = {{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
                                         {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}};
  for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
    char p[128];
    snprintf(p, sizeof(p), "%s/dev/%s", m->root, links[i][1]);
    if (symlink(links[i][0], p) < 0) return kbox_error_make(err, errno, "symlink %s", p);
  }
  char shm[128];
  snprintf(shm, sizeof(shm), "%s/shm", m->scratch);
  cleanup_close int target = -1;
  if (make_target(m, "/dev/shm", true, &target, err) < 0) return -1;
  char p[64];
  fd_path(target, p, sizeof(p));
  return do_mount(shm, p, NULL, MS_BIND, NULL, err);
}

/* Fallback for a refused fresh /proc: the outer /proc bound read-only (with the mounts the container
   put on it); the caller masks it like a fresh one. The sandbox then sees the outer pid namespace's
   processes (it still cannot signal or trace them), so pid isolation is only partial. */
static int bind_outer_proc(struct kbox_mounts *m, kbox_error_t *err) {
  cleanup_close int target = -1;
  if (make_target(m, "/proc", true, &target, err) < 0) return -1;
  char p[64];
  fd_path(target, p, sizeof(p));
  if (do_mount("/proc", p, NULL, MS_BIND | MS_REC, NULL, err) < 0) return -1;
  char full[128];
  snprintf(full, sizeof(full), "%s/proc", m->root);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
  if (syscall(SYS_mount_setattr, AT_FDCWD, full, AT_RECURSIVE, &attr, sizeof(attr)) < 0)
    return kbox_error_make(err, errno, "making the bound /proc read-only");
  return 0;
}

/* A zygote's /proc (docs/warm.md, "Kernels outlive their zygote"): it has no pid namespace of its
   own, so it binds the host's, left writable and unmasked (its kernels mount their own over it). */
static int bind_zygote_proc(struct kbox_mounts *m, kbox_error_t *err) {
  cleanup_close int target = -1;
  if (make_target(m, "/proc", true, &target, err) < 0) return -1;
  char p[64];
  fd_path(target, p, sizeof(p));
  return do_mount("/proc", p, NULL, MS_BIND | MS_REC, NULL, err);
}

/* A fresh /proc for the sandbox's pid namespace, or (when the spec allows it) the fallback above. */
static int mount_proc(struct kbox_mounts *m, kbox_error_t *err) {
  if (m->spec->sandbox.warm_zygote && m->spec->sandbox.ns_flags != 0 && !(m->spec->sandbox.ns_flags & CLONE_NEWPID)) return bind_zygote_proc(m, err);
  if (mount_inside(m, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) == 0) return 0;
  if (!(m->spec->sandbox.fallbacks & (1u << KBOX_STEP_PROC))) {
    kbox_error_prefix(err, "mounting a fresh /proc");
    return kbox_error_hint(err, "the container's /proc is masked (podman/docker default, Kubernetes procMount Default), which forbids a new procfs: run it with an unmasked /proc (podman/docker --security-opt unmask=ALL; Kubernetes procMount: Unmasked with hostUsers: false; see docs/pods.md)");
  }
  char refused[KBOX_STEP_WHY];
  snprintf(refused, sizeof(refused), "%s", (*err)->msg);
  kbox_error_free(err);
  if (bind_outer_proc(m, err) < 0) return kbox_error_prefix(err, "mounting /proc (a fresh one was refused: %s)", refused);
  kbox_achieved_note(&m->achieved, KBOX_STEP_PROC, "a fresh /proc was refused (%s): read-only bind of the container's /proc, masked; the sandbox sees the container's processes", refused);
  return 0;
}

int kbox_mounts_system(struct kbox_mounts *m, kbox_error_t *err) {
  if (mount_proc(m, err) < 0) return -1;
  if (mount_inside(m, "sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0) {
    kbox_debug("no /sys in the sandbox: %s", (*err)->msg);
    kbox_achieved_note(&m->achieved, KBOX_STEP_SYSFS, "a fresh /sys was refused (%s): none mounted", (*err)->msg);
    kbox_error_free(err);
  }
  if (mount_dev(m, err) < 0) return kbox_error_prefix(err, "building /dev");
  char first_mask[512] = "";
  for (size_t i = 0; !m->spec->sandbox.warm_zygote && kbox_masked_paths[i] != NULL; i++)
    if (mask_path(m, kbox_masked_paths[i], first_mask, err) < 0) return kbox_error_prefix(err, "masking %s", kbox_masked_paths[i]);
  for (size_t i = 0; !m->spec->sandbox.warm_zygote && kbox_readonly_paths[i] != NULL; i++)
    if (readonly_path(m, kbox_readonly_paths[i], err) < 0) return -1;
  char tmp[128];
  snprintf(tmp, sizeof(tmp), "%s/tmp", m->scratch);
  cleanup_close int target = -1;
  if (make_target(m, "/tmp", true, &target, err) < 0) return -1;
  char p[64];
  fd_path(target, p, sizeof(p));
  return do_mount(tmp, p, NULL, MS_BIND, NULL, err);
}

/* Overlay i: its host tree read-only below an upper on the scratch tmpfs (in the disk budget),
   owned by the sandbox user, at the host path. */
static int mount_overlay(struct kbox_mounts *m, size_t i, kbox_error_t *err) {
  const struct kbox_spec *s = m->spec;
  char dir[96], l[128], u[128], w[128];
  snprintf(dir, sizeof(dir), "%.40s/ovl", m->scratch);
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "mkdir %s", dir);
  snprintf(dir, sizeof(dir), "%.40s/ovl/%zu", m->scratch, i);
  snprintf(l, sizeof(l), "%s/l", dir);
  snprintf(u, sizeof(u), "%s/u", dir);
  snprintf(w, sizeof(w), "%s/w", dir);
  if (mkdir(dir, 0755) < 0 || mkdir(l, 0755) < 0 || mkdir(u, 0755) < 0 || mkdir(w, 0700) < 0)
    return kbox_error_make(err, errno, "creating the writable layer of %s", s->sandbox.overlays.v[i]);
  if (attach(m->overlay_fds[i], l, err) < 0) return -1;
  close(m->overlay_fds[i]);
  m->overlay_fds[i] = -1;
  struct stat st;
  if (stat(l, &st) < 0 || chmod(u, (st.st_mode & 07777) | 0700) < 0 || chown(u, s->sandbox.uid, s->sandbox.gid) < 0)
    return kbox_error_make(err, errno, "preparing the writable layer of %s", s->sandbox.overlays.v[i]);
  cleanup_close int target = -1;
  if (make_target(m, s->sandbox.overlays.v[i], true, &target, err) < 0) return -1;
  char p[64], opts[512];
  fd_path(target, p, sizeof(p));
  snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s,userxattr", l, u, w);
  return do_mount("overlay", p, "overlay", MS_NOSUID | MS_NODEV, opts, err);
}

int kbox_mounts_shared(struct kbox_mounts *m, kbox_error_t *err) {
  const struct kbox_spec *s = m->spec;
  if (s->sandbox.workdir != NULL && attach_inside(m, m->workdir_fd, s->sandbox.workdir, err) < 0)
    return kbox_error_prefix(err, "--workdir %s", s->sandbox.workdir);
  for (size_t i = 0; i < s->sandbox.n_binds; i++)
    if (attach_inside(m, m->bind_fds[i], s->sandbox.binds[i].dst, err) < 0)
      return kbox_error_prefix(err, "--bind %s", s->sandbox.binds[i].src);
  /* Shorter paths first: an ipython dir goes below the profile dir inside it. */
  for (size_t len = 1, done = 0; done < s->sandbox.overlays.n && len < 4096; len++)
    for (size_t i = 0; i < s->sandbox.overlays.n; i++)
      if (strlen(s->sandbox.overlays.v[i]) == len) {
        if (mount_overlay(m, i, err) < 0) return kbox_error_prefix(err, "--profile-dir %s", s->sandbox.overlays.v[i]);
        done++;
      }
  return 0;
}

/* Home directory of uid from a passwd file ("" when absent). */
static void passwd_home(const char *path, uid_t uid, char *out, size_t n) {
  out[0] = '\0';
  cleanup_file FILE *f = fopen(path, "re");
  if (f == NULL) return;
  char line[1024];
  while (fgets(line, sizeof(line), f) != NULL) {
    char *fields[7] = {0};
    char *p = line;
    line[strcspn(line, "\n")] = '\0';
    for (int i = 0; i < 7 && p != NULL; i++) fields[i] = strsep(&p, ":");
    if (fields[5] == NULL || fields[2] == NULL) continue;
    if ((uid_t)strtoul(fields[2], NULL, 10) == uid && fields[5][0] == '/') {
      snprintf(out, n, "%s", fields[5]);
      return;
    }
  }
}

/* Pick HOME from the top-most layer's /etc/passwd (or /home/jovyan, /home/user). */
static void find_home(struct kbox_mounts *m) {
  const struct kbox_spec *s = m->spec;
  m->home[0] = '\0';
  for (size_t k = s->sandbox.rootfs.n; k-- > 0 && m->home[0] == '\0';) {
    char p[128];
    snprintf(p, sizeof(p), "%.40s/lower/%zu/etc/passwd", m->scratch, k);
    if (access(p, F_OK) == 0) passwd_home(p, s->sandbox.uid, m->home, sizeof(m->home));
    if (access(p, F_OK) == 0) break;
  }
  if (m->home[0] == '\0' || strcmp(m->home, "/") == 0 || strcmp(m->home, "/nonexistent") == 0 ||
      strstr(m->home, "..") != NULL)
    snprintf(m->home, sizeof(m->home), "/home/%s", s->sandbox.uid == 1000 ? "jovyan" : "user");
}

int kbox_mounts_home(struct kbox_mounts *m, kbox_error_t *err) {
  const struct kbox_spec *s = m->spec;
  find_home(m);
  /* Create the home in the upper layer before the overlay exists: the merged directory then takes
     the upper's owner (the sandbox user) while the image's files in it stay visible. */
  char path[512];
  int n = snprintf(path, sizeof(path), "%s/upper", m->scratch);
  for (char *c = m->home; *c != '\0';) {
    size_t len = strcspn(c + 1, "/") + 1;
    n += snprintf(path + n, sizeof(path) - (size_t)n, "%.*s", (int)len, c);
    c += len;
    if (mkdir(path, 0755) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating home %s", m->home);
  }
  if (chown(path, s->sandbox.uid, s->sandbox.gid) < 0) return kbox_error_make(err, errno, "chown home %s to %u:%u", m->home, s->sandbox.uid, s->sandbox.gid);
  return 0;
}

/* True when some mount point lies strictly below dir (per our mountinfo). */
static bool has_submounts(const char *dir) {
  cleanup_file FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return false;
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  char line[4096];
  while (fgets(line, sizeof(line), f) != NULL) {
    char mp[4096];
    if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1) continue;
    bool below = n == 1 ? strcmp(mp, "/") != 0 : strncmp(mp, dir, n) == 0 && mp[n] == '/';
    if (below) return true;
  }
  return false;
}

/* Same user namespace as /proc/1 (when readable): false means we are in a child of it. */
static bool same_userns_as_pid1(void) {
  struct stat self, init;
  if (stat("/proc/self/ns/user", &self) < 0 || stat("/proc/1/ns/user", &init) < 0) return true;
  return self.st_dev == init.st_dev && self.st_ino == init.st_ino;
}

bool kbox_mounts_in_initial_userns(void) {
  cleanup_file FILE *f = fopen("/proc/self/uid_map", "re");
  if (f == NULL) return true; /* no user namespaces in this kernel */
  unsigned long inner = 1, outer = 1, count = 0;
  char extra[8];
  bool identity = fscanf(f, "%lu %lu %lu", &inner, &outer, &count) == 3 && inner == 0 && outer == 0 &&
                  count == 4294967295UL && fscanf(f, "%7s", extra) != 1;
  return identity && same_userns_as_pid1();
}

int kbox_mounts_check_rootless_layers(const struct kbox_spec *spec, kbox_error_t *err) {
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++) {
    cleanup_free char *real = realpath(spec->sandbox.rootfs.v[i], NULL);
    if (real != NULL && has_submounts(real)) {
      kbox_error_make(err, 0, "--rootfs %s: kbox %s cannot use a directory with other filesystems mounted below it (the kernel locks them and overlayfs refuses the layer)", spec->sandbox.rootfs.v[i],
                      spec->rootless ? "running rootless" : "running outside the host's initial user namespace (e.g. in a container)");
      return kbox_error_hint(err, "use a rootfs directory (see 'kbox image build', or KBOX_ROOTFS for kbox entrypoint) or run kbox as root of the host");
    }
  }
  return 0;
}

int kbox_mounts_pivot(struct kbox_mounts *m, kbox_error_t *err) {
  if (chdir(m->root) < 0) return kbox_error_make(err, errno, "chdir %s", m->root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) return kbox_error_make(err, errno, "pivot_root");
  if (umount2(".", MNT_DETACH) < 0) return kbox_error_make(err, errno, "detaching the old root");
  if (chdir("/") < 0) return kbox_error_make(err, errno, "chdir /");
  return 0;
}
