/* A tiny process that removes the sandbox cgroups once kbox is gone, even after SIGKILL.

   kbox keeps the write end of a pipe; the reaper (its own session, outside the sandbox cgroup,
   deaf to terminal signals) reads it until EOF. Before creating a cgroup directory kbox writes its
   path there, so there is no moment at which a directory exists that the reaper does not know of.
   EOF means kbox exited: after a normal exit the directories are already gone and it just leaves;
   after a SIGKILL it kills what is left and removes them, deepest (last created) first. When kbox
   removed them itself it says so (an empty record), so a later sandbox of the same name (a cold
   start after a failed warm one) is never removed by this reaper. It is
   started early, before the cgroup v1 directories are made, and primes the RCU grace period of the
   v1 move (kbox_cgroup_v1_prime_path). Only raw system calls run after the fork (kbox may have
   threads by then). */
#include "cgroup/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/orphan.h"
#include "util/proc.h"

#define REAPER_BUF 65536 /* room for the paths of every directory of one sandbox */

/* Write "0" to PATH (kbox's own v1 cgroup.procs): see kbox_cgroup_v1_prime_path. */
static void prime(const char *path) {
  int fd = path != NULL ? open(path, O_WRONLY | O_CLOEXEC) : -1;
  if (fd < 0) return;
  if (write(fd, "0", 1) < 0) {} /* an unwritable cgroup only means no head start */
  close(fd);
}

/* Remove the NUL-separated paths of buf[0..n), last first. */
static void remove_all(char *buf, size_t n) {
  while (n > 0) {
    size_t start = n - 1;
    while (start > 0 && buf[start - 1] != '\0') start--;
    if (buf[start] != '\0') kbox_cgroup_remove_dir(buf + start);
    n = start;
  }
}

/* The reaper's life: prime the v1 move, collect paths until EOF, then remove every directory. */
__attribute__((noreturn)) static void reaper_main(int fd, const char *prime_path) {
  static char buf[REAPER_BUF];
  size_t n = 0;
  kbox_close_fds_except(0, fd);
  prime(prime_path);
  for (;;) {
    if (n == sizeof(buf)) n = 0; /* a sandbox has at most 4 directories: unreachable, but never overflow */
    ssize_t r = read(fd, buf + n, sizeof(buf) - n);
    if (r == 0 || (r < 0 && errno != EINTR)) break;
    if (r < 0) continue;
    for (size_t i = n; i < n + (size_t)r; i++) /* an empty record: kbox removed them itself */
      if (buf[i] == '\0' && (i == 0 || buf[i - 1] == '\0')) _exit(0);
    n += (size_t)r;
  }
  while (n > 0 && buf[n - 1] != '\0') n--; /* a path cut by kbox's death was never created */
  remove_all(buf, n);
  _exit(0);
}

/* reaper_main with its argument (for kbox_orphan_start). */
__attribute__((noreturn)) static void reaper_start(int fd, void *prime_path) { reaper_main(fd, prime_path); }

int kbox_cgroup_reaper_start(struct kbox_cgroup *cg, kbox_error_t *err) {
  if (cg->reaper_fd >= 0) return 0;
  int wfd;
  pid_t pid = kbox_orphan_start(reaper_start, cg->v1_prime, "cgroup reaper", &wfd, err);
  if (pid < 0) return -1;
  cg->reaper_parent = pid; /* it exits at once; waited for in kbox_cgroup_destroy, off the start-up path */
  cg->reaper_fd = wfd;
  return 0;
}

void kbox_cgroup_reaper_forget(struct kbox_cgroup *cg) {
  if (cg->reaper_fd < 0) return;
  ssize_t w;
  do w = write(cg->reaper_fd, "", 1); while (w < 0 && errno == EINTR);
}

int kbox_cgroup_reaper_watch(struct kbox_cgroup *cg, const char *dir, kbox_error_t *err) {
  if (kbox_cgroup_reaper_start(cg, err) < 0) return -1;
  size_t len = strlen(dir) + 1; /* with its NUL: the record separator */
  /* A pipe write of at most PIPE_BUF bytes is atomic: the reaper sees whole records only. */
  if (len > PIPE_BUF) return kbox_error_make(err, ENAMETOOLONG, "cgroup path %s", dir);
  ssize_t w;
  do w = write(cg->reaper_fd, dir, len); while (w < 0 && errno == EINTR);
  if (w != (ssize_t)len) return kbox_error_make(err, w < 0 ? errno : EIO, "telling the cgroup reaper about %s", dir);
  return 0;
}
