#include "util/pid1.h"

#include <errno.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* Signals pid 1 leaves alone (see pid1.h). */
static const int not_forwarded[] = {SIGCHLD, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL,
                                    SIGTRAP, SIGSYS,  SIGABRT, SIGTTIN, SIGTTOU};

void kbox_pid1_forwarded(sigset_t *set) {
  sigfillset(set); /* glibc leaves out the two real-time signals it keeps for threads */
  for (size_t i = 0; i < sizeof(not_forwarded) / sizeof(not_forwarded[0]); i++) sigdelset(set, not_forwarded[i]);
}

int kbox_pid1_signalfd(kbox_error_t *err) {
  sigset_t set;
  kbox_pid1_forwarded(&set);
  sigaddset(&set, SIGCHLD);
  signal(SIGCHLD, SIG_DFL); /* an inherited SIG_IGN would reap behind our back and lose the status */
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return kbox_error_make(err, errno, "sigprocmask");
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  return sfd >= 0 ? sfd : kbox_error_make(err, errno, "signalfd");
}

/* Reap every exited process; true (and the status) once child is among them. */
static bool reap_all(pid_t child, int *status) {
  bool done = false;
  for (;;) {
    int st = 0;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p <= 0) return done;
    if (p == child) {
      *status = st;
      done = true;
    }
  }
}

bool kbox_pid1_service(int sfd, pid_t child, int *status) {
  bool done = false;
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
    if (si.ssi_signo != SIGCHLD) kill(child, (int)si.ssi_signo);
    else if (reap_all(child, status)) done = true;
  }
  /* a SIGCHLD merged with one read earlier: reap again so no zombie waits for the next signal */
  return reap_all(child, status) || done;
}

int kbox_pid1_wait(int sfd, pid_t child) {
  int status = 0;
  struct pollfd p = {.fd = sfd, .events = POLLIN};
  while (!kbox_pid1_service(sfd, child, &status))
    if (poll(&p, 1, -1) < 0 && errno != EINTR) return 255;
  return kbox_pid1_exit_code(status);
}

int kbox_pid1_exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
}
