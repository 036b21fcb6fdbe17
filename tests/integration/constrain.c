/* constrain: run a command where something kbox needs is really refused, so the doctor test can
   compare doctor's verdict with what `kbox run` then achieves.
     constrain no-userns CMD...  root of a user + mount namespace (ids mapped 1:1) in which
                                 user.max_user_namespaces is 0: new user namespaces fail (ENOSPC)
     constrain no-mount CMD...   under a seccomp filter that fails mount(2) with EPERM (as a
                                 container profile that refuses mounting would)
   Exits with CMD's status, 90+ when the constraint itself could not be set up. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int put(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The child: a new user + mount namespace; the parent maps it; then user namespaces are disabled. */
static int no_userns(char **cmd) {
  int ready[2], go[2];
  if (pipe(ready) < 0 || pipe(go) < 0) return 90;
  pid_t pid = fork();
  if (pid == 0) {
    char c;
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0 || write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1) _exit(91);
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) _exit(92);
    if (put("/proc/sys/user/max_user_namespaces", "0\n") < 0) _exit(93);
    execvp(cmd[0], cmd);
    _exit(94);
  }
  char c, path[64];
  if (pid < 0 || read(ready[0], &c, 1) != 1) return 90;
  snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
  if (put(path, "0 0 4294967295\n") < 0) return 95;
  snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
  if (put(path, "0 0 4294967295\n") < 0) return 95;
  if (write(go[1], "g", 1) != 1) return 90;
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int no_mount(char **cmd) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == NULL || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mount), 0) < 0 || seccomp_load(ctx) < 0)
    return 96;
  seccomp_release(ctx);
  execvp(cmd[0], cmd);
  return 94;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: constrain no-userns|no-mount CMD [ARGS...]\n");
    return 2;
  }
  if (strcmp(argv[1], "no-userns") == 0) return no_userns(argv + 2);
  if (strcmp(argv[1], "no-mount") == 0) return no_mount(argv + 2);
  fprintf(stderr, "constrain: unknown constraint %s\n", argv[1]);
  return 2;
}
