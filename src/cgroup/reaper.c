/* A tiny process that removes the sandbox cgroups once kbox is gone, even after SIGKILL.

   kbox keeps the write end of a pipe; the reaper (its own session, outside the sandbox cgroup,
   deaf to terminal signals) blocks on the read end. EOF means kbox exited: after a normal exit
   the directories are already gone and it just leaves; after a SIGKILL it kills what is left
   and removes them. Only raw system calls run after the fork (kbox may have threads by then). */
#include "cgroup/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Write "0" to PATH (kbox's own v1 cgroup.procs): see kbox_cgroup_v1_prime_path. */
static void prime(const char *path) {
  int fd = path != NULL ? open(path, O_WRONLY | O_CLOEXEC) : -1;
  if (fd < 0) return;
  if (write(fd, "0", 1) < 0) {} /* an unwritable cgroup only means no head start */
  close(fd);
}

/* The reaper's life: prime the v1 move, wait for EOF, then remove every directory. */
__attribute__((noreturn)) static void reaper_main(int fd, char *const dirs[], int n, const char *prime_path) {
  setsid();
  struct sigaction ign = {.sa_handler = SIG_IGN};
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD) sigaction(s, &ign, NULL);
  if (fd > 0) syscall(SYS_close_range, 0, (unsigned)fd - 1, 0);
  syscall(SYS_close_range, (unsigned)fd + 1, ~0U, 0);
  prime(prime_path);
  char c;
  for (;;) {
    ssize_t r = read(fd, &c, 1);
    if (r == 0 || (r < 0 && errno != EINTR)) break;
  }
  for (int i = 0; i < n; i++) kbox_cgroup_remove_dir(dirs[i]);
  _exit(0);
}

int kbox_cgroup_reaper_start(struct kbox_cgroup *cg, kbox_error_t *err) {
  char *dirs[1 + KBOX_CTL_N];
  int n = 0;
  if (cg->v2_dir != NULL) dirs[n++] = cg->v2_dir;
  for (int c = 0; c < KBOX_CTL_N; c++) {
    bool seen = cg->v1_dir[c] == NULL;
    for (int o = 0; o < n && !seen; o++) seen = strcmp(dirs[o], cg->v1_dir[c]) == 0;
    if (!seen) dirs[n++] = cg->v1_dir[c];
  }
  if (n == 0) return 0;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return kbox_error_make(err, errno, "pipe for the cgroup reaper");
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return kbox_error_make(err, errno, "fork of the cgroup reaper");
  }
  if (pid == 0) {
    close(p[1]);
    /* Double fork: the reaper is nobody's child we must wait for. */
    if (fork() == 0) reaper_main(p[0], dirs, n, cg->v1_prime);
    _exit(0);
  }
  close(p[0]);
  cg->reaper_parent = pid; /* it exits at once; waited for in kbox_cgroup_destroy, off the start-up path */
  cg->reaper_fd = p[1];
  return 0;
}
