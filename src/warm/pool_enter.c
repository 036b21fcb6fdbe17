/* The parts of a claim that reach into the pool kernel from the host (docs/warm.md, "The pool"):
   its processes moved into the claim's cgroups, and a child that joins its user, mount and uts
   namespaces to set the hostname and mount the workdir and binds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "util/alloc.h"
#include "sandbox/idmap.h"
#include "sandbox/mounts.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/trace.h"
#include "warm/pool.h"

/* Append the children of every thread of pid to list (v1 moves take whole thread groups). */
static void add_children(pid_t pid, pid_t *list, size_t *n, size_t cap) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  if (d == NULL) return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    char file[320], *text = NULL;
    snprintf(file, sizeof(file), "/proc/%d/task/%s/children", (int)pid, e->d_name);
    kbox_error_t ignored = NULL;
    if (kbox_read_file(file, 65536, &text, NULL, &ignored) < 0) {
      kbox_error_free(&ignored);
      continue;
    }
    for (char *p = text, *end; *n < cap; p = end) {
      long c = strtol(p, &end, 10);
      if (end == p) break;
      list[(*n)++] = (pid_t)c;
    }
    free(text);
  }
  closedir(d);
}

/* Move pid 1 and everything below it into cg (cgroup v1 memory: with what they already charged,
   so the kernel's start-up pages count against its limit as a fork's do). */
static int move_kernel(struct kbox_cgroup *cg, pid_t pid1, kbox_error_t *err) {
  if (cg->v1_dir[KBOX_CTL_MEMORY] != NULL) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/memory.move_charge_at_immigrate", cg->v1_dir[KBOX_CTL_MEMORY]);
    kbox_error_t e = NULL;
    if (access(path, F_OK) == 0 && kbox_write_file(path, "3", &e) < 0) { /* refused since Linux 6.x */
      kbox_debug("warm pool: %s (the kernel's start-up memory stays charged to its pool cgroup's parent)", e->msg);
      kbox_error_free(&e);
    }
  }
  pid_t list[256];
  size_t n = 0;
  list[n++] = pid1;
  for (size_t i = 0; i < n; i++) {
    if (kbox_cgroup_attach(cg, list[i], true, err) < 0) return -1;
    add_children(list[i], list, &n, sizeof(list) / sizeof(list[0]));
  }
  return 0;
}

/* In a child that joined the kernel's user, mount and uts namespaces (as its root): the hostname,
   then the workdir and binds from the trees in m, at their paths inside the kernel's root. */
__attribute__((noreturn)) static void enter_child(pid_t pid1, const struct kbox_spec *spec, struct kbox_mounts *m, int errfd) {
  static const char *const ns[] = {"user", "mnt", "uts"};
  static const int type[] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWUTS};
  kbox_error_t err = NULL;
  int fds[3];
  for (int i = 0; i < 3; i++) { /* all opened as the host's root: pid 1 is not dumpable */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid1, ns[i]);
    if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
      kbox_error_make(&err, errno, "opening %s", path);
      goto failed;
    }
  }
  for (int i = 0; i < 3; i++)
    if (setns(fds[i], type[i]) < 0) {
      kbox_error_make(&err, errno, "joining the pool kernel's %s namespace", ns[i]);
      goto failed;
    }
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
    kbox_error_make(&err, errno, "becoming root of the pool kernel's user namespace");
    goto failed;
  }
  if (sethostname(spec->sandbox.hostname, strlen(spec->sandbox.hostname)) < 0) {
    kbox_error_make(&err, errno, "naming the pool kernel's uts namespace");
    goto failed;
  }
  snprintf(m->root, sizeof(m->root), "/");
  if (kbox_mounts_shared(m, &err) < 0) goto failed;
  _exit(0);
failed:
  if (write(errfd, err->msg, strlen(err->msg)) < 0) _exit(2);
  _exit(1);
}

/* The claim's binds without the run dir (the kernel keeps its own, renamed to ours). */
static size_t other_binds(const struct kbox_spec *spec, struct kbox_bind *out) {
  size_t n = 0;
  for (size_t i = 0; i < spec->sandbox.n_binds; i++)
    if (strcmp(spec->sandbox.binds[i].dst, KBOX_WARM_RUN_INNER) != 0) out[n++] = spec->sandbox.binds[i];
  return n;
}

int kbox_warm_pool_enter_start(pid_t pid1, const struct kbox_spec *spec, struct kbox_pool_entry *e, kbox_error_t *err) {
  e->pid = -1;
  e->fd = -1;
  struct kbox_spec view = *spec; /* shallow: only the workdir and the binds are mounted */
  cleanup_free struct kbox_bind *binds = xcalloc(spec->sandbox.n_binds + 1, sizeof(*binds));
  view.sandbox.n_binds = other_binds(spec, binds);
  view.sandbox.binds = binds;
  view.sandbox.rootfs = (struct kbox_strv){0};
  view.sandbox.overlays = (struct kbox_strv){0};
  struct kbox_idmap map;
  int workdir_fd = -1;
  if (kbox_idmap_compute(spec, &map, err) < 0) return -1;
  if (spec->sandbox.workdir != NULL && kbox_idmap_bind_owned(spec->sandbox.workdir, spec, &map, &workdir_fd, err) < 0) return -1;
  struct kbox_mounts m;
  kbox_mounts_init(&m, &view, workdir_fd);
  int pipefd[2] = {-1, -1}, rc = -1;
  if (kbox_mounts_open_sources(&m, err) < 0) goto out;
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    kbox_error_make(err, errno, "pipe");
    goto out;
  }
  pid_t pid = fork();
  if (pid < 0) {
    kbox_error_make(err, errno, "fork");
    goto out;
  }
  if (pid == 0) {
    close(pipefd[0]);
    enter_child(pid1, &view, &m, pipefd[1]);
  }
  e->pid = pid;
  e->fd = pipefd[0];
  pipefd[0] = -1;
  rc = 0;
out:
  kbox_mounts_free(&m);
  if (pipefd[0] >= 0) close(pipefd[0]);
  if (pipefd[1] >= 0) close(pipefd[1]);
  return rc;
}

int kbox_warm_pool_enter_finish(struct kbox_pool_entry *e, kbox_error_t *err) {
  if (e->pid <= 0) return 0;
  char msg[512];
  ssize_t got;
  do got = read(e->fd, msg, sizeof(msg) - 1); while (got < 0 && errno == EINTR);
  close(e->fd);
  int st = 0;
  while (waitpid(e->pid, &st, 0) < 0 && errno == EINTR) {
  }
  e->pid = e->fd = -1;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    msg[got > 0 ? got : 0] = '\0';
    return kbox_error_make(err, 0, "%s", got > 0 ? msg : "entering the pool kernel's namespaces");
  }
  kbox_trace_step("pool: hostname, workdir and binds");
  return 0;
}

int kbox_warm_pool_move(pid_t pid1, struct kbox_cgroup *cg, kbox_error_t *err) {
  if (move_kernel(cg, pid1, err) < 0) return -1;
  kbox_trace_step("pool: kernel moved into its cgroups");
  return 0;
}
