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
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "util/alloc.h"
#include "sandbox/channel.h"
#include "sandbox/init.h"
#include "sandbox/mounts.h"
#include "sandbox/net.h"
#include "sandbox/workload.h"
#include "security/security.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/trace.h"
#include "warm/child.h"
#include "warm/proto.h"

static struct kbox_seccomp_compiled warm_filter; /* the kernel's filter, from the request */

/* The library's versions of three host-side functions the shared steps call. */
int kbox_security_apply(const struct kbox_spec_sec *sec, kbox_error_t *err) {
  if (sec->seccomp_unconfined) return 0;
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

/* The limits pid 2 sets as rlimits (GO's status and text, see client.c's send_go), as a cold
   pid 1 learns them with JOINED; and the soft limits a rootless zygote has (its memory) lifted
   to the hard ones the fork inherited, so the kernel starts from its caller's, as a cold one. */
static void plan_rlimits(const struct kbox_msg *m, bool rootless) {
  unsigned long long as = 0, nproc = 0;
  struct kbox_cgroup cg = {0};
  if (sscanf(m->text, "%llu %llu", &as, &nproc) == 2) {
    cg.lim.memory = as;
    cg.lim.pids = nproc;
  }
  kbox_rlimits_plan_values(&cg);
  kbox_rlimits_plan_set_bits((unsigned)m->status);
  static const int lifted[] = {RLIMIT_AS, RLIMIT_NPROC};
  for (size_t i = 0; rootless && i < sizeof(lifted) / sizeof(lifted[0]); i++) {
    struct rlimit r;
    if (getrlimit(lifted[i], &r) == 0 && r.rlim_cur != r.rlim_max) {
      r.rlim_cur = r.rlim_max;
      setrlimit(lifted[i], &r);
    }
  }
}

/* Wait for GO (maps written, in the cgroups), which carries the kernel's stdout/stderr: the caller's
   stderr is sent only to a live fork, so a wedged zygote never holds it (a reader waiting for
   its end of file would wait as long). */
static int wait_go(int chan, bool rootless) {
  struct kbox_msg m;
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  kbox_error_t err = NULL;
  if (kbox_warm_recv(chan, &m, sizeof(m), fds, &n, &err) != (long)sizeof(m) || m.type != KBOX_MSG_GO || n != 1)
    _exit(KBOX_EXIT_RUNTIME);
  m.text[sizeof(m.text) - 1] = '\0';
  plan_rlimits(&m, rootless);
  return fds[0];
}

/* Copy n fds into a malloc'ed array (kbox_mounts owns and closes them). */
static int *take_fds(const int *fds, size_t n) {
  int *out = xcalloc(n + 1, sizeof(int));
  memcpy(out, fds, n * sizeof(int));
  return out;
}

/* pid 2: become the kernel's process and return to Python. Its outcome goes to pid 1 on errpipe:
   STARTED with its pid, or the error. */
static void become_kernel(const struct kbox_spec *spec, const char *home, int stdio, int errpipe, char *envbuf,
                          size_t envcap) {
  kbox_error_t err = NULL;
  struct kbox_strv env = {0};
  struct kbox_msg msg = {.type = KBOX_MSG_ERROR};
  if (kbox_workload_prepare(spec, home, &env, &err) < 0) goto failed;
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0 || dup2(stdio, 1) < 0 || dup2(stdio, 2) < 0) {
    kbox_error_make(&err, errno, "setting up the kernel's stdio");
    goto failed;
  }
  /* Nothing of the zygote, the host or pid 1 stays open but the error pipe. */
  kbox_close_fds_except(3, errpipe);
  if (kbox_security_apply(&spec->sec, &err) < 0) goto failed;
  kbox_warm_pack_env(&env, envbuf, envcap);
  kbox_strv_free(&env);
  msg.type = KBOX_MSG_STARTED;
  msg.status = getpid();
  if (write(errpipe, &msg, sizeof(msg)) != (ssize_t)sizeof(msg)) _exit(KBOX_EXIT_RUNTIME);
  close(errpipe);
  kbox_trace_step("identity, capabilities, seccomp: returning to Python");
  return;
failed:
  msg.exit_code = err->exit_code;
  msg.errno_ = err->errno_;
  snprintf(msg.text, sizeof(msg.text), "%s", err->msg);
  if (write(errpipe, &msg, sizeof(msg)) < 0) _exit(KBOX_EXIT_RUNTIME);
  _exit(KBOX_EXIT_RUNTIME);
}

/* Pid 1 is a clone(CLONE_VM) of the middle: no copy of the zygote's 150-200 MB address space
   (each fork of it costs 10-25 ms of page tables), so of the three processes a warm start makes
   only the zygote's fork (the middle) and pid 2 copy it. The middle exits right after the clone
   without touching memory, so pid 1 is the only user of the libc state (heap, TLS) they share.
   Pid 2, forked by pid 1, returns to Python through the middle's stack, where kbox_warm_child's
   frame still stands (the middle never returned from it): see resume_python. */
struct pid1_args {
  struct kbox_spec *spec;
  int chan, stdio;
  const int *trees;
  size_t n_trees;
  char *envbuf;
  size_t envcap;
};

#define PID1_STACK (256 * 1024)

static jmp_buf resume_python; /* set by kbox_warm_child on the middle's stack, taken by pid 2 */

/* pid 1 of the new pid namespace: build the root, fork pid 2 (which returns to Python), supervise. */
static int pid1_main(void *arg) {
  struct pid1_args *a = arg;
  kbox_error_t err = NULL;
  kbox_trace_process("pid1");
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  int sfd = kbox_init_signalfd(&err);
  if (sfd < 0) child_fail(a->chan, &err);
  if (send_self(a->chan, KBOX_WARM_MSG_PID1, &err) < 0) _exit(KBOX_EXIT_RUNTIME);
  kbox_trace_step("pid 1 cloned (CLONE_VM), its pidfd sent");
  struct kbox_spec *spec = a->spec;
  int chan = a->chan;
  size_t nl = spec->sandbox.rootfs.n, nb = spec->sandbox.n_binds, nw = spec->sandbox.workdir != NULL ? 1 : 0;
  if (a->n_trees != nl + nb + nw) {
    kbox_error_make(&err, 0, "warm start: %zu mount trees for %zu layers, %zu binds, %zu workdir", a->n_trees, nl, nb, nw);
    child_fail(chan, &err);
  }
  struct kbox_mounts m;
  kbox_mounts_init(&m, spec, nw ? a->trees[nl + nb] : -1);
  m.lower_fds = take_fds(a->trees, nl);
  m.bind_fds = take_fds(a->trees + nl, nb);
  struct kbox_init_args ia = {.spec = spec, .chan = chan, .mounts = &m};
  if (kbox_init_setup(&ia, &err) < 0) child_fail(chan, &err);
  kbox_mounts_free(&m);
  kbox_trace_step("sandbox built (kbox_init_setup)");
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
    kbox_trace_process("workload");
    kbox_trace_step("forked");
    close(pipefd[0]);
    become_kernel(spec, m.home, a->stdio, pipefd[1], a->envbuf, a->envcap);
    longjmp(resume_python, 1);
  }
  close(pipefd[1]);
  close(a->stdio);
  struct kbox_msg msg;
  ssize_t r;
  do r = read(pipefd[0], &msg, sizeof(msg)); while (r < 0 && errno == EINTR);
  close(pipefd[0]);
  if (r != (ssize_t)sizeof(msg)) {
    kbox_error_make(&err, 0, "warm start: the kernel's process ended before it was set up");
    child_fail(chan, &err);
  }
  if (msg.type != KBOX_MSG_STARTED) {
    msg.text[sizeof(msg.text) - 1] = '\0';
    send(chan, &msg, sizeof(msg), MSG_NOSIGNAL);
    _exit(msg.exit_code);
  }
  kbox_msg_send(chan, KBOX_MSG_STARTED, pid, &err);
  kbox_trace_step("STARTED sent");
  kbox_init_supervise(chan, sfd, pid);
  _exit(0);
}

int kbox_warm_child(const char *req, size_t len, const int *fds, int n_fds, char *envbuf, size_t envcap) {
  kbox_error_t err = NULL;
  if (n_fds < KBOX_WARM_FD_TREES || envcap < 2) _exit(KBOX_EXIT_RUNTIME);
  int chan = fds[KBOX_WARM_FD_CHAN];
  static struct kbox_spec spec; /* lives as long as the process */
  kbox_spec_init(&spec);
  if (kbox_warm_decode(req, len, &spec, &warm_filter, &err) < 0) child_fail(chan, &err);
  kbox_trace_process("fork");
  kbox_trace_step("request decoded in the zygote's fork");
  kbox_log_set_id(spec.id);
  kbox_log_set_level(spec.verbosity >= 2 ? KBOX_LOG_DEBUG : spec.verbosity ? KBOX_LOG_INFO : KBOX_LOG_WARN);
  /* The middle process: a nested user namespace; the host writes its maps and cgroups. */
  if (unshare(CLONE_NEWUSER) < 0) {
    kbox_error_make(&err, errno, "warm start: unshare(CLONE_NEWUSER) in the zygote");
    child_fail(chan, &err);
  }
  if (send_self(chan, KBOX_WARM_MSG_MIDDLE, &err) < 0) _exit(KBOX_EXIT_RUNTIME);
  kbox_trace_step("user namespace unshared, pidfd sent");
  int stdio = wait_go(chan, spec.rootless);
  kbox_trace_step("GO received (id maps written, in the cgroups)");
  struct kbox_init_args a = {.spec = &spec, .chan = chan};
  if (kbox_init_become_root(&a, &err) < 0) child_fail(chan, &err);
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (unshare(flags) < 0) {
    kbox_error_make(&err, errno, "warm start: unshare of the kernel's namespaces");
    child_fail(chan, &err);
  }
  kbox_trace_step("root in the user namespace; mount, pid, net, ipc, uts, cgroup namespaces unshared");
  if (setjmp(resume_python) != 0) return 0; /* pid 2, back from pid1_main's fork */
  static struct pid1_args p1; /* read by pid 1 (same address space) */
  p1 = (struct pid1_args){.spec = &spec, .chan = chan, .stdio = stdio, .trees = fds + KBOX_WARM_FD_TREES,
                          .n_trees = (size_t)(n_fds - KBOX_WARM_FD_TREES), .envbuf = envbuf, .envcap = envcap};
  char *stack = mmap(NULL, PID1_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    kbox_error_make(&err, errno, "warm start: pid 1's stack");
    child_fail(chan, &err);
  }
  /* The first child in the new pid namespace is its pid 1; the zygote (a subreaper) adopts it. */
  if (clone(pid1_main, stack + PID1_STACK, CLONE_VM | SIGCHLD, &p1) < 0) {
    kbox_error_make(&err, errno, "warm start: clone of pid 1");
    child_fail(chan, &err);
  }
  /* At once: from here pid 1 alone uses the address space (and our exit must not clear the tid
     word of the thread descriptor it shares with us). */
  syscall(SYS_set_tid_address, NULL);
  _exit(0);
}

/* --trace-setup from Python (zygote.py): the kernel's own steps, in the same format. */
void kbox_warm_trace(const char *what) { kbox_trace_step("%s", what); }

/* Whether this kernel traces (zygote.py then times the kernel app's steps too). */
int kbox_warm_tracing(void) { return kbox_trace_enabled(); }
