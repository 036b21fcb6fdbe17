#include "sandbox/init.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "sandbox/channel.h"
#include "sandbox/mounts.h"
#include "sandbox/net.h"
#include "sandbox/net_relay.h"
#include "sandbox/workload.h"
#include "util/cleanup.h"
#include "util/pid1.h"
#include "util/trace.h"

/* Report a setup failure to the host and exit. */
__attribute__((noreturn)) static void init_fail(int chan, kbox_error_t *err) {
  kbox_msg_send_error(chan, err);
  _exit(KBOX_EXIT_RUNTIME);
}

/* Name the uts namespace; where that is refused (a seccomp profile that wants CAP_SYS_ADMIN for
   sethostname) and the spec allows it, keep the namespace with the name it inherited. */
static int set_hostname(struct kbox_init_args *a, kbox_error_t *err) {
  const struct kbox_spec *s = a->spec;
  if (sethostname(s->sandbox.hostname, strlen(s->sandbox.hostname)) == 0) return 0;
  int e = errno;
  if (!(s->sandbox.fallbacks & (1u << KBOX_STEP_HOSTNAME))) {
    kbox_error_make(err, e, "naming the sandbox's uts namespace (sethostname)");
    return kbox_error_hint(err, "the container's seccomp profile allows sethostname only with CAP_SYS_ADMIN (the podman/CRI-O default profile): run it with a profile that allows it (podman/docker --security-opt seccomp=FILE; Kubernetes seccompProfile Localhost; see docs/pods.md)");
  }
  kbox_achieved_note(&a->mounts->achieved, KBOX_STEP_HOSTNAME, "sethostname refused (%s): own uts namespace, hostname inherited from the container", strerror(e));
  return 0;
}

/* All setup steps that run inside the namespaces before the workload exists. */
static int setup_sandbox(struct kbox_init_args *a, kbox_error_t *err) {
  struct kbox_mounts *m = a->mounts;
  if (set_hostname(a, err) < 0) return -1;
  if (kbox_net_loopback_up(err) < 0) return -1;
  kbox_trace_step("hostname, loopback up");
  if (m->lower_fds == NULL && kbox_mounts_open_sources(m, err) < 0) return -1;
  if (kbox_mounts_rootfs(m, err) < 0) return -1;
  kbox_trace_step("root: tmpfs, layers, home, overlay");
  if (kbox_mounts_system(m, err) < 0) return -1;
  kbox_trace_step("/proc, /sys, /dev, masked and read-only paths, /tmp");
  if (kbox_mounts_shared(m, err) < 0) return -1;
  if (kbox_mounts_pivot(m, err) < 0) return kbox_error_prefix(err, "switching to the new root");
  kbox_trace_step("workdir, binds, pivot_root");
  return 0;
}

/* Wait for the host's message `type` (GO: our id maps are written; JOINED: we are in our
   cgroups), or die with the host. Returns the message's status field. */
static int wait_for(int chan, int type) {
  struct kbox_msg msg;
  kbox_error_t err = NULL;
  if (kbox_msg_recv(chan, &msg, &err) != 1 || msg.type != type) _exit(KBOX_EXIT_RUNTIME);
  return msg.status;
}

/* Take an identity that exists in the new user namespace (root mode: inside root; rootless: the
   only mapped id), which also re-arms the parent-death signal that a credential change clears. */
static int become_mapped_root(struct kbox_init_args *a, kbox_error_t *err) {
  const struct kbox_spec *s = a->spec;
  uid_t uid = s->rootless ? s->sandbox.uid : 0;
  gid_t gid = s->rootless ? s->sandbox.gid : 0;
  if (setresgid(gid, gid, gid) < 0) return kbox_error_make(err, errno, "setresgid %u in the user namespace", gid);
  if (setresuid(uid, uid, uid) < 0) return kbox_error_make(err, errno, "setresuid %u in the user namespace", uid);
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  struct pollfd p = {.fd = a->chan, .events = POLLIN};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR))) _exit(KBOX_EXIT_RUNTIME);
  return 0;
}

/* Fork the workload; returns its pid after it has executed (or reports its failure and exits). */
static pid_t start_workload(struct kbox_init_args *a, const char *home) {
  int pipefd[2];
  kbox_error_t err = NULL;
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    kbox_error_make(&err, errno, "pipe");
    init_fail(a->chan, &err);
  }
  kbox_trace_step("forking the workload");
  /* vfork: the workload borrows pid 1's memory until it executes (or fails and exits), instead of
     a copy of it (pid 1 is a clone of kbox: a page table copy, then copy-on-write faults in both).
     pid 1 is single-threaded and waits meanwhile; the workload changes only its own process
     attributes (fds, signals, rlimits, ids, capabilities, seccomp: none is shared by CLONE_VM)
     and memory pid 1 no longer uses (its environment, the trace's process name, reset below). */
  pid_t pid = vfork();
  if (pid < 0) {
    kbox_error_make(&err, errno, "fork of the workload");
    init_fail(a->chan, &err);
  }
  if (pid == 0) {
    kbox_trace_process("workload");
    kbox_trace_step("forked");
    close(pipefd[0]);
    close(a->chan);
    kbox_workload_exec(a->spec, home, pipefd[1]);
  }
  kbox_trace_process("pid1");
  close(pipefd[1]);
  kbox_trace_step("fork returned (the workload executed or failed)");
  struct kbox_msg m;
  ssize_t r;
  do r = read(pipefd[0], &m, sizeof(m)); while (r < 0 && errno == EINTR);
  close(pipefd[0]);
  if (r == (ssize_t)sizeof(m)) {
    m.text[sizeof(m.text) - 1] = '\0';
    send(a->chan, &m, sizeof(m), MSG_NOSIGNAL);
    _exit(m.exit_code);
  }
  return pid;
}

int kbox_init_signalfd(kbox_error_t *err) { return kbox_pid1_signalfd(err); }

/* pid 1's loop: forward signals, reap, leave when the workload ends or the host goes away. */
__attribute__((noreturn)) static void supervise(int chan, int sfd, pid_t workload) {
  struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = chan, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) _exit(KBOX_EXIT_RUNTIME);
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) _exit(KBOX_EXIT_RUNTIME); /* host gone */
    int status = 0;
    if ((fds[0].revents & POLLIN) && kbox_pid1_service(sfd, workload, &status)) {
      kbox_error_t err = NULL;
      kbox_msg_send(chan, KBOX_MSG_EXITED, status, &err);
      _exit(0);
    }
  }
}

void kbox_init_main(struct kbox_init_args *a) {
  kbox_error_t err = NULL;
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  wait_for(a->chan, KBOX_MSG_GO);
  kbox_trace_step("GO received (id maps written)");
  if (become_mapped_root(a, &err) < 0) init_fail(a->chan, &err);
  /* Not dumpable: the workload (even with the same uid, rootless) cannot ptrace or read our memory. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  int sfd = kbox_init_signalfd(&err);
  if (sfd < 0) init_fail(a->chan, &err);
  if (setup_sandbox(a, &err) < 0) init_fail(a->chan, &err);
  kbox_mounts_free(a->mounts);
  if (a->spec->sandbox.net_relay_sock != NULL && kbox_net_relay_start(a->spec->sandbox.net_relay_sock, &err) < 0) init_fail(a->chan, &err);
  /* The host attached us to v1 cgroups while we mounted; JOINED says which limits are rlimits. */
  kbox_rlimits_plan_set_bits((unsigned)wait_for(a->chan, KBOX_MSG_JOINED));
  kbox_trace_step("JOINED received (in the v1 cgroups)");
  char achieved[sizeof(((struct kbox_msg *)0)->text)];
  kbox_achieved_encode(&a->mounts->achieved, achieved, sizeof(achieved));
  if (kbox_msg_send_text(a->chan, KBOX_MSG_ACHIEVED, (int)a->mounts->achieved.degraded, achieved, &err) < 0)
    _exit(KBOX_EXIT_RUNTIME);
  pid_t workload = start_workload(a, a->mounts->home);
  kbox_trace_step("workload forked and executed");
  kbox_msg_send(a->chan, KBOX_MSG_STARTED, workload, &err);
  supervise(a->chan, sfd, workload);
}

/* Entry points for a sandbox whose pid 1 is not a clone3 child of kbox (a warm kernel forked from a
   zygote, src/warm): the same steps, called by a caller that decides which process becomes what. */
int kbox_init_setup(struct kbox_init_args *a, kbox_error_t *err) { return setup_sandbox(a, err); }

int kbox_init_become_root(struct kbox_init_args *a, kbox_error_t *err) { return become_mapped_root(a, err); }

void kbox_init_supervise(int chan, int sfd, pid_t workload) { supervise(chan, sfd, workload); }
