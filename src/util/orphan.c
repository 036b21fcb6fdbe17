#include "util/orphan.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

pid_t kbox_orphan_start(void (*fn)(int fd, void *arg), void *arg, const char *what, int *wfd, kbox_error_t *err) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return kbox_error_make(err, errno, "pipe for the %s", what);
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return kbox_error_make(err, errno, "fork of the %s", what);
  }
  if (pid == 0) {
    close(p[1]);
    if (fork() == 0) {
      setsid(); /* no terminal's signals, and every other asynchronous one ignored: it ends at EOF */
      struct sigaction ign = {.sa_handler = SIG_IGN};
      for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD) sigaction(s, &ign, NULL);
      fn(p[0], arg);
    }
    _exit(0);
  }
  close(p[0]);
  *wfd = p[1];
  return pid;
}
