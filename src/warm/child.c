/* libkbox-warm.so: the kernel side of a warm start, called (ctypes) by the zygote in a fresh fork.
   The fork becomes a sandbox like a cold one, with the same steps (src/sandbox): a nested user
   namespace whose maps the host writes, the host moves it into the kernel's cgroups, then new
   mount, pid, net, ipc, uts and cgroup namespaces; a pid 1 that builds the root from the trees
   the host sent and supervises; and pid 2, which drops everything and returns to Python to
   become the kernel. Only pid 2 returns. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "sandbox/channel.h"
#include "sandbox/init.h"
#include "sandbox/mounts.h"
#include "sandbox/net.h"
#include "sandbox/workload.h"
#include "security/security.h"
#include "util/log.h"
#include "util/proc.h"
#include "warm/child.h"
#include "warm/proto.h"

static struct kbox_seccomp_compiled warm_filter; /* the kernel's filter, from the request */

/* The library's versions of three host-side functions the shared steps call. */
int kbox_security_apply(const struct kbox_spec *spec, kbox_error_t *err) {
  if (spec->seccomp_unconfined) return 0;
  if (warm_filter.n == 0) return kbox_error_make(err, 0, "warm start: the request carried no seccomp filter");
  for (size_t i = 0; i < warm_filter.n; i++)
    if (syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, &warm_filter.progs[i]) < 0)
      return kbox_error_make(err, errno, "installing the seccomp filter (%zu of %zu)", i + 1, warm_filter.n);
  return 0;
}

__attribute__((noreturn)) static void child_fail(int chan, kbox_error_t *err) {
  kbox_msg_send_error(chan, err);
  _exit(KBOX_EXIT_RUNTIME);
}

/* Send our own pidfd to the host (it learns our host pid from it, and can signal and watch us). */
static int send_self(int chan, int type, kbox_error_t *err) {
  int pfd = kbox_pidfd_open(getpid(), 0);
  if (pfd < 0) return kbox_error_make(err, errno, "pidfd_open");
  struct kbox_msg m = {.type = type};
  int rc = kbox_warm_send(chan, &m, sizeof(m), &pfd, 1, err);
  close(pfd);
  return rc;
}

/* Wait for GO (maps written, in the cgroups), which carries the kernel's stdout/stderr: the caller's
   stderr is sent only to a live fork, so a wedged zygote never holds it (a reader waiting for
   its end of file would wait as long). */
static int wait_go(int chan) {
  struct kbox_msg m;
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  kbox_error_t err = NULL;
  if (kbox_warm_recv(chan, &m, sizeof(m), fds, &n, &err) != (long)sizeof(m) || m.type != KBOX_MSG_GO || n != 1)
    _exit(KBOX_EXIT_RUNTIME);
  return fds[0];
}

/* Copy n fds into a malloc'ed array (kbox_mounts owns and closes them). */
static int *take_fds(const int *fds, size_t n) {
  int *out = calloc(n + 1, sizeof(int));
  if (out == NULL) abort();
  memcpy(out, fds, n * sizeof(int));
  return out;
}

/* pid 2: become the kernel's process and return to Python. */
static void become_kernel(const struct kbox_spec *spec, struct kbox_mounts *m, int stdio, int errpipe, char *envbuf,
                          size_t envcap) {
  kbox_error_t err = NULL;
  struct kbox_strv env = {0};
  struct kbox_msg fail = {.type = KBOX_MSG_ERROR};
  if (kbox_workload_prepare(spec, m->home, &env, &err) < 0) goto failed;
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0 || dup2(stdio, 1) < 0 || dup2(stdio, 2) < 0) {
    kbox_error_make(&err, errno, "setting up the kernel's stdio");
    goto failed;
  }
  /* Nothing of the zygote, the host or pid 1 stays open but the error pipe. */
  kbox_close_fds_except(3, errpipe);
  if (kbox_security_apply(spec, &err) < 0) goto failed;
  size_t at = 0;
  for (size_t i = 0; i < env.n; i++) {
    size_t n = strlen(env.v[i]) + 1;
    if (at + n + 1 > envcap) break;
    memcpy(envbuf + at, env.v[i], n);
    at += n;
  }
  envbuf[at] = '\0';
  kbox_strv_free(&env);
  close(errpipe); /* success: pid 1 reads EOF */
  return;
failed:
  fail.exit_code = err->exit_code;
  fail.errno_ = err->errno_;
  snprintf(fail.text, sizeof(fail.text), "%s", err->msg);
  if (write(errpipe, &fail, sizeof(fail)) < 0) _exit(KBOX_EXIT_RUNTIME);
  _exit(KBOX_EXIT_RUNTIME);
}

/* pid 1 of the new pid namespace: build the root, fork pid 2 (which returns), supervise. */
static void be_pid1(struct kbox_spec *spec, int chan, int stdio, const int *trees, size_t n_trees, char *envbuf,
                    size_t envcap) {
  kbox_error_t err = NULL;
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  int sfd = kbox_init_signalfd(&err);
  if (sfd < 0) child_fail(chan, &err);
  if (send_self(chan, KBOX_WARM_MSG_PID1, &err) < 0) _exit(KBOX_EXIT_RUNTIME);
  size_t nl = spec->rootfs.n, nb = spec->n_binds, nw = spec->workdir != NULL ? 1 : 0;
  if (n_trees != nl + nb + nw) {
    kbox_error_make(&err, 0, "warm start: %zu mount trees for %zu layers, %zu binds, %zu workdir", n_trees, nl, nb, nw);
    child_fail(chan, &err);
  }
  struct kbox_mounts m;
  kbox_mounts_init(&m, spec, nw ? trees[nl + nb] : -1);
  m.lower_fds = take_fds(trees, nl);
  m.bind_fds = take_fds(trees + nl, nb);
  struct kbox_init_args a = {.spec = spec, .chan = chan, .mounts = &m};
  if (kbox_init_setup(&a, &err) < 0) child_fail(chan, &err);
  kbox_mounts_free(&m);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    kbox_error_make(&err, errno, "pipe");
    child_fail(chan, &err);
  }
  pid_t pid = fork();
  if (pid < 0) {
    kbox_error_make(&err, errno, "fork of the kernel");
    child_fail(chan, &err);
  }
  if (pid == 0) {
    close(pipefd[0]);
    become_kernel(spec, &m, stdio, pipefd[1], envbuf, envcap);
    return;
  }
  close(pipefd[1]);
  close(stdio);
  struct kbox_msg msg;
  ssize_t r;
  do r = read(pipefd[0], &msg, sizeof(msg)); while (r < 0 && errno == EINTR);
  close(pipefd[0]);
  if (r == (ssize_t)sizeof(msg)) {
    msg.text[sizeof(msg.text) - 1] = '\0';
    send(chan, &msg, sizeof(msg), MSG_NOSIGNAL);
    _exit(msg.exit_code);
  }
  kbox_msg_send(chan, KBOX_MSG_STARTED, pid, &err);
  kbox_init_supervise(chan, sfd, pid);
}

int kbox_warm_child(const char *req, size_t len, const int *fds, int n_fds, char *envbuf, size_t envcap) {
  kbox_error_t err = NULL;
  if (n_fds < KBOX_WARM_FD_TREES || envcap < 2) _exit(KBOX_EXIT_RUNTIME);
  int chan = fds[KBOX_WARM_FD_CHAN];
  static struct kbox_spec spec; /* lives as long as the process */
  kbox_spec_init(&spec);
  if (kbox_warm_decode(req, len, &spec, &warm_filter, &err) < 0) child_fail(chan, &err);
  kbox_log_set_id(spec.id);
  kbox_log_set_level(spec.verbosity >= 2 ? KBOX_LOG_DEBUG : spec.verbosity ? KBOX_LOG_INFO : KBOX_LOG_WARN);
  /* The middle process: a nested user namespace; the host writes its maps and cgroups. */
  if (unshare(CLONE_NEWUSER) < 0) {
    kbox_error_make(&err, errno, "warm start: unshare(CLONE_NEWUSER) in the zygote");
    child_fail(chan, &err);
  }
  if (send_self(chan, KBOX_WARM_MSG_MIDDLE, &err) < 0) _exit(KBOX_EXIT_RUNTIME);
  int stdio = wait_go(chan);
  struct kbox_init_args a = {.spec = &spec, .chan = chan};
  if (kbox_init_become_root(&a, &err) < 0) child_fail(chan, &err);
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (unshare(flags) < 0) {
    kbox_error_make(&err, errno, "warm start: unshare of the kernel's namespaces");
    child_fail(chan, &err);
  }
  pid_t pid = fork(); /* the first child in the new pid namespace is its pid 1 */
  if (pid < 0) {
    kbox_error_make(&err, errno, "warm start: fork of pid 1");
    child_fail(chan, &err);
  }
  if (pid > 0) _exit(0); /* the zygote (a subreaper) adopts pid 1 */
  be_pid1(&spec, chan, stdio, fds + KBOX_WARM_FD_TREES, (size_t)(n_fds - KBOX_WARM_FD_TREES), envbuf, envcap);
  return 0; /* pid 2 */
}
