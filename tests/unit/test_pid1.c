/* The one pid-1 routine (util/pid1.h), as the sandbox's init and the entrypoint run it: a process
   made a subreaper stands in for pid 1, a workload under it reports each signal it receives, and an
   orphan of the workload must not stay a zombie. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/init.h"
#include "util/pid1.h"

/* What pid 1 must forward, written out here rather than taken from the code under test. */
static bool must_forward(int s) {
  static const int kept[] = {SIGCHLD, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT, SIGTTIN, SIGTTOU};
  for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
    if (kept[i] == s) return false;
  return s < 32 || s >= SIGRTMIN; /* 32 and 33 belong to glibc's threads */
}

static int report_fd;

static void on_signal(int s) {
  unsigned char b = (unsigned char)s;
  if (write(report_fd, &b, 1) < 0) _exit(3);
}

/* The workload: a handler for every signal, an orphan left to pid 1, then wait for ctl to close. */
__attribute__((noreturn)) static void workload(int rep, int ctl) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  report_fd = rep;
  for (int s = 1; s <= SIGRTMAX; s++)
    if (must_forward(s)) signal(s, on_signal);
  pid_t mid = fork();
  if (mid == 0) {
    pid_t orphan = fork();
    if (orphan == 0) {
      usleep(100 * 1000);
      _exit(0);
    }
    if (write(rep, &orphan, sizeof(orphan)) < 0) _exit(3);
    _exit(0);
  }
  waitpid(mid, NULL, 0);
  char c;
  while (read(ctl, &c, 1) != 0) {
  }
  signal(SIGTERM, SIG_DFL);
  raise(SIGTERM);
  _exit(4);
}

/* The stand-in pid 1: the routine the entrypoint runs. */
__attribute__((noreturn)) static void stand_in_pid1(int rep[2], int ctl[2]) {
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  kbox_error_t err = NULL;
  int sfd = kbox_pid1_signalfd(&err);
  if (sfd < 0) _exit(2);
  pid_t w = fork();
  if (w == 0) {
    close(rep[0]);
    close(ctl[1]);
    workload(rep[1], ctl[0]);
  }
  close(rep[1]);
  close(ctl[0]);
  close(ctl[1]);
  _exit(kbox_pid1_wait(sfd, w));
}

static bool read_timed(int fd, void *buf, size_t n) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 10000) == 1 && read(fd, buf, n) == (ssize_t)n;
}

/* The state letter of pid in /proc, or 0 once it is gone (reaped). */
static char proc_state(pid_t pid) {
  char path[64], line[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  char *ok = fgets(line, sizeof(line), f);
  fclose(f);
  char *paren = ok != NULL ? strrchr(line, ')') : NULL;
  return paren != NULL ? paren[2] : '?';
}

static pid_t stand_in = -1;

/* A failed assertion leaves the stand-in pid 1 running (it ignores SIGTERM: it forwards it). */
static void kill_stand_in(void) {
  if (stand_in > 0) kill(stand_in, SIGKILL);
}

Test(pid1, forwards_every_asynchronous_signal_reaps_orphans_and_exits_128_plus_signal, .fini = kill_stand_in) {
  int rep[2], ctl[2];
  cr_assert_eq(pipe(rep), 0);
  cr_assert_eq(pipe(ctl), 0);
  pid_t p1 = fork();
  cr_assert_geq(p1, 0);
  if (p1 == 0) stand_in_pid1(rep, ctl);
  stand_in = p1;
  close(rep[1]);
  close(ctl[0]);
  pid_t orphan = 0;
  cr_assert(read_timed(rep[0], &orphan, sizeof(orphan)), "the workload did not start");
  int sent = 0;
  for (int s = 1; s <= SIGRTMAX; s++) {
    if (!must_forward(s)) continue;
    cr_assert_eq(kill(p1, s), 0);
    unsigned char got = 0;
    cr_assert(read_timed(rep[0], &got, 1), "signal %d (%s) sent to pid 1 never reached the workload", s, strsignal(s));
    cr_assert_eq(got, s, "pid 1 passed signal %d where %d was sent", got, s);
    sent++;
  }
  cr_assert_geq(sent, 50, "only %d signals tried", sent);
  char st = 'R';
  for (int i = 0; i < 100 && (st = proc_state(orphan)) != 0; i++) usleep(50 * 1000);
  cr_assert_eq(st, 0, "the orphan %d is still there (state %c): pid 1 did not reap it", orphan, st);
  close(ctl[1]);
  int status = 0;
  cr_assert_eq(waitpid(p1, &status, 0), p1);
  stand_in = -1;
  cr_assert(WIFEXITED(status), "pid 1 itself died (status 0x%x)", status);
  cr_assert_eq(WEXITSTATUS(status), 128 + SIGTERM, "pid 1 exited %d for a workload killed by SIGTERM", WEXITSTATUS(status));
  close(rep[0]);
}

Test(pid1, exit_status_passes_through) {
  cr_assert_eq(kbox_pid1_exit_code(3 << 8), 3);
  cr_assert_eq(kbox_pid1_exit_code(SIGKILL), 128 + SIGKILL);
}

/* The sandbox's init blocks (and so forwards) exactly pid 1's set: the two cannot drift apart. */
Test(pid1, sandbox_init_uses_the_same_signals) {
  pid_t c = fork();
  cr_assert_geq(c, 0);
  if (c == 0) {
    kbox_error_t err = NULL;
    if (kbox_init_signalfd(&err) < 0) _exit(2);
    sigset_t blocked;
    sigprocmask(SIG_SETMASK, NULL, &blocked);
    for (int s = 1; s <= SIGRTMAX; s++)
      if (sigismember(&blocked, s) != (must_forward(s) || s == SIGCHLD)) _exit(10);
    _exit(0);
  }
  int status = 0;
  waitpid(c, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the sandbox init's signal mask differs from pid 1's (status 0x%x)", status);
}
