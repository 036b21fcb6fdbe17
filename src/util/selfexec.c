#include "util/selfexec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the copy: its stdio, its death signal, its variable, no blocked signal, then kbox again. */
__attribute__((noreturn)) static void become_copy(char *const argv[], const struct kbox_selfexec *o, pid_t parent) {
  if (o->death_signal != 0 && parent != 0) {
    prctl(PR_SET_PDEATHSIG, o->death_signal);
    if (getppid() != parent) _exit(0); /* we died before the signal was armed */
  }
  if (o->env_name != NULL) setenv(o->env_name, o->env_value, 1);
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    if (!o->keep_stderr) dup2(null, 2);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execv("/proc/self/exe", argv);
  _exit(127);
}

pid_t kbox_selfexec(char *const argv[], const struct kbox_selfexec *o, kbox_error_t *err) {
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return kbox_error_make(err, errno, "fork");
  if (pid == 0) {
    if (o->detach) {
      setsid();
      if (fork() != 0) _exit(0); /* not our caller's child: it need not reap us */
      parent = 0;               /* a death signal would name the intermediate: none when detached */
    }
    become_copy(argv, o, parent);
  }
  if (!o->detach) return pid;
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return 0;
}
