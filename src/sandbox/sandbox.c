#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/limits.h"
#include "sandbox/channel.h"
#include "sandbox/idmap.h"
#include "sandbox/init.h"
#include "sandbox/ns.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/trace.h"

/* Reserve the sandbox id for this user with an abstract unix socket (gone when kbox dies). */
static int reserve_id(const struct kbox_spec *spec, int *out, kbox_error_t *err) {
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return kbox_error_make(err, errno, "socket");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "kbox/%u/%s", spec->host_uid, spec->id);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
  if (bind(fd, (struct sockaddr *)&addr, len) < 0) {
    if (errno == EADDRINUSE)
      return kbox_error_make(err, 0, "--id: a sandbox with id '%s' is already running; pick another id", spec->id);
    return kbox_error_make(err, errno, "reserving sandbox id %s", spec->id);
  }
  *out = steal_fd(fd);
  return 0;
}

static void sandbox_reset(struct kbox_sandbox *sb, struct kbox_spec *spec) {
  memset(sb, 0, sizeof(*sb));
  sb->spec = spec;
  sb->pidfd = sb->chan = sb->id_lock = -1;
  sb->pid = -1;
}

/* Wait for pid 1 to report the workload started, or why it could not. */
static int wait_started(struct kbox_sandbox *sb, kbox_error_t *err) {
  struct kbox_msg m;
  int r = kbox_msg_recv(sb->chan, &m, err);
  /* pid 1 exiting with our JOINED unread resets the channel once; its ERROR message is still queued */
  if (r < 0 && (*err)->errno_ == ECONNRESET) {
    kbox_error_free(err);
    r = kbox_msg_recv(sb->chan, &m, err);
  }
  if (r < 0) return -1;
  if (r == 0) return kbox_error_make(err, 0, "the sandbox died during setup");
  if (m.type == KBOX_MSG_ACHIEVED) {
    kbox_achieved_decode(&sb->achieved, (uint32_t)m.status, m.text);
    for (int s = 0; s < KBOX_STEP_N; s++)
      if (kbox_achieved_degraded(&sb->achieved, s)) kbox_info("fallback (%s): %s", kbox_step_names[s], sb->achieved.why[s]);
    return wait_started(sb, err);
  }
  if (m.type == KBOX_MSG_STARTED) {
    sb->workload_pid = m.status;
    return 0;
  }
  if (m.type == KBOX_MSG_ERROR) {
    kbox_error_make(err, 0, "%s", m.text);
    (*err)->errno_ = m.errno_;
    (*err)->exit_code = m.exit_code;
    return -1;
  }
  return kbox_error_make(err, 0, "unexpected message %d from the sandbox", m.type);
}

/* clone3 bypasses glibc's fork handling: a child cloned while another thread holds a lock (malloc's)
   would hang on it. Refuse to clone from a threaded process, loudly, instead of hanging sometimes. */
static int check_single_threaded(kbox_error_t *err) {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return 0; /* no /proc: nothing to check with */
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  long threads = 1;
  for (int field = 2; p != NULL && field < 20; field++) p = strchr(p + 1, ' ');
  if (p != NULL) threads = strtol(p + 1, NULL, 10);
  if (threads > 1)
    return kbox_error_make(err, 0, "internal error: the sandbox must be created before kbox starts threads (%ld running)", threads);
  return 0;
}

int kbox_sandbox_start(struct kbox_sandbox *sb, struct kbox_spec *spec, kbox_error_t *err) {
  sandbox_reset(sb, spec);
  if (check_single_threaded(err) < 0) return -1;
  if (reserve_id(spec, &sb->id_lock, err) < 0) return -1;
  kbox_trace_step("id reserved");
  if (kbox_limits_setup(&spec->limits, spec->id, &sb->cgroup, err) < 0) return -1;
  kbox_trace_step("cgroups planned (a v2 cgroup with limits made), reaper started");
  struct kbox_idmap map;
  if (kbox_idmap_compute(spec, &map, err) < 0) return -1;
  int workdir_fd = -1;
  uint64_t ns_flags = spec->sandbox.ns_flags != 0 ? spec->sandbox.ns_flags : KBOX_NS_FLAGS_ALL;
  bool new_userns = (ns_flags & CLONE_NEWUSER) != 0; /* else ids are not shifted: nothing to idmap */
  if (!spec->rootless && new_userns && spec->sandbox.workdir != NULL &&
      kbox_idmap_bind_owned(spec->sandbox.workdir, spec, &map, &workdir_fd, err) < 0)
    return kbox_error_prefix(err, "--workdir");
  if (workdir_fd >= 0) kbox_trace_step("workdir idmapped");
  /* Root: take the source trees here, in the initial namespace, so they are not locked and
     overlayfs accepts them. Rootless: pid 1 takes them inside its own namespaces. */
  struct kbox_mounts mounts;
  kbox_mounts_init(&mounts, spec, workdir_fd);
  if (!spec->rootless && new_userns && (mounts.layer_userns = kbox_idmap_userns_fd(map.uid_map, map.gid_map, err)) < 0) {
    kbox_mounts_free(&mounts);
    return -1;
  }
  if (mounts.layer_userns >= 0) kbox_trace_step("user namespace for idmapped layers");
  if (!spec->rootless && kbox_mounts_open_sources(&mounts, err) < 0) {
    kbox_mounts_free(&mounts);
    return -1;
  }
  if (!spec->rootless) kbox_trace_step("layers and binds taken (open_tree, idmapped)");
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
    kbox_mounts_free(&mounts);
    return kbox_error_make(err, errno, "socketpair");
  }
  clock_gettime(CLOCK_MONOTONIC, &sb->started);
  fflush(NULL);
  int cgroup_fd = sb->cgroup != NULL ? sb->cgroup->v2_fd : -1; /* born inside its limits */
  pid_t pid = kbox_clone3(ns_flags, cgroup_fd, &sb->pidfd, err);
  if (pid == 0) {
    kbox_trace_process("pid1");
    close(sp[0]);
    struct kbox_init_args args = {.spec = spec, .chan = sp[1], .mounts = &mounts};
    kbox_init_main(&args);
  }
  close(sp[1]);
  kbox_mounts_free(&mounts);
  sb->chan = sp[0];
  if (pid < 0) {
    kbox_idmap_reap_holders();
    return -1;
  }
  sb->pid = pid;
  kbox_trace_step("clone3 (namespaces%s)", cgroup_fd >= 0 ? ", into the cgroup v2 cgroup" : "");
  if ((new_userns && kbox_idmap_write(pid, &map, err) < 0) || kbox_msg_send(sb->chan, KBOX_MSG_GO, 0, err) < 0) {
    kbox_sandbox_kill(sb);
    return -1;
  }
  kbox_trace_step("id maps written, GO sent");
  kbox_idmap_reap_holders();
  /* v1 hierarchies: their directories are made, and pid 1 moved into them (which waits for an RCU
     grace period, milliseconds), while pid 1 mounts; pid 1 starts no process before JOINED, so the
     workload is born in its cgroups, and learns with JOINED which limits fall back to rlimits. */
  if (sb->cgroup != NULL && (kbox_limits_finish(&spec->limits, sb->cgroup, err) < 0 ||
                             kbox_cgroup_attach(sb->cgroup, pid, cgroup_fd < 0, err) < 0)) {
    kbox_sandbox_kill(sb);
    return -1;
  }
  /* When this fails pid 1 has already failed: wait_started reads its reason. */
  kbox_error_t ignored = NULL;
  if (kbox_msg_send(sb->chan, KBOX_MSG_JOINED, (int)kbox_rlimits_plan_bits(), &ignored) < 0) kbox_error_free(&ignored);
  if (wait_started(sb, err) < 0) {
    kbox_sandbox_kill(sb);
    return -1;
  }
  kbox_trace_step("workload started (pid 1 reported it executed)");
  return 0;
}

int kbox_sandbox_on_message(struct kbox_sandbox *sb, kbox_error_t *err) {
  struct kbox_msg m;
  int r = kbox_msg_recv(sb->chan, &m, err);
  if (r <= 0) {
    close(sb->chan);
    sb->chan = -1;
    return r;
  }
  if (m.type == KBOX_MSG_EXITED) {
    sb->have_status = true;
    sb->status = m.status;
    kbox_trace_step("workload's exit status received");
  }
  return 0;
}

/* Once pid 1 is gone: read the cgroup's verdict counters. An OOM group kill (cgroup v2) takes
   pid 1 with the workload, so the workload's status is what the kernel did to it: SIGKILL. */
static void on_reaped(struct kbox_sandbox *sb) {
  kbox_cgroup_collect(sb->cgroup);
  if (!sb->have_status && kbox_limits_oom_killed(sb->cgroup)) {
    sb->have_status = true;
    sb->status = SIGKILL; /* wait status "killed by signal 9" */
  }
}

/* A pid 1 that is not our child (sb->foreign): gone once its pidfd is readable; its parent reaps it. */
static pid_t foreign_wait(struct kbox_sandbox *sb, int timeout_ms) {
  struct pollfd p = {.fd = sb->pidfd, .events = POLLIN};
  int r;
  do r = poll(&p, 1, timeout_ms); while (r < 0 && errno == EINTR);
  return r > 0 ? sb->pid : 0;
}

bool kbox_sandbox_reap(struct kbox_sandbox *sb) {
  if (sb->reaped) return true;
  int st = 0;
  pid_t r = sb->foreign ? foreign_wait(sb, 0) : wait4(sb->pid, &st, WNOHANG, &sb->rusage);
  if (r != sb->pid) return false;
  sb->reaped = true;
  clock_gettime(CLOCK_MONOTONIC, &sb->ended);
  /* Drain a final EXITED message pid 1 may have sent just before exiting. */
  while (sb->chan >= 0 && !sb->have_status) {
    struct pollfd p = {.fd = sb->chan, .events = POLLIN};
    kbox_error_t ignored = NULL;
    if (poll(&p, 1, 0) <= 0 || kbox_sandbox_on_message(sb, &ignored) < 0) {
      kbox_error_free(&ignored);
      break;
    }
  }
  on_reaped(sb);
  return true;
}

/* What the host passes on to pid 1: the signals a user or a kernel manager sends kbox. */
const int kbox_forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGWINCH, 0};

int kbox_sandbox_signalfd(kbox_error_t *err) {
  sigset_t set;
  sigemptyset(&set);
  for (int i = 0; kbox_forwarded_signals[i] != 0; i++) sigaddset(&set, kbox_forwarded_signals[i]);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) return kbox_error_make(err, errno, "signalfd");
  return fd;
}

void kbox_sandbox_signal(struct kbox_sandbox *sb, int sig) {
  if (sb->pidfd >= 0 && !sb->reaped) kbox_pidfd_send_signal(sb->pidfd, sig);
}

void kbox_sandbox_release(struct kbox_sandbox *sb) {
  if (sb->reaped || sb->released || !sb->have_status) return;
  sb->released = true;
  clock_gettime(CLOCK_MONOTONIC, &sb->ended);
  kbox_cgroup_collect(sb->cgroup);
}

void kbox_sandbox_kill(struct kbox_sandbox *sb) {
  if (sb->pid <= 0 || sb->reaped || sb->released) return;
  if (sb->kill_signal == 0) sb->kill_signal = SIGKILL;
  kbox_sandbox_signal(sb, SIGKILL);
  int st = 0;
  if ((sb->foreign ? foreign_wait(sb, -1) : wait4(sb->pid, &st, 0, &sb->rusage)) == sb->pid) {
    sb->reaped = true;
    clock_gettime(CLOCK_MONOTONIC, &sb->ended);
    on_reaped(sb);
  }
}

void kbox_sandbox_destroy(struct kbox_sandbox *sb) {
  kbox_sandbox_kill(sb);
  kbox_idmap_reap_holders(); /* when start failed before it did */
  if (sb->released && !sb->reaped) kbox_cgroup_hand_off(sb->cgroup);
  else kbox_cgroup_destroy(sb->cgroup);
  sb->cgroup = NULL;
  if (sb->pidfd >= 0) close(sb->pidfd);
  if (sb->chan >= 0) close(sb->chan);
  if (sb->id_lock >= 0) close(sb->id_lock);
  sb->pidfd = sb->chan = sb->id_lock = -1;
}

int kbox_sandbox_exit_code(const struct kbox_sandbox *sb) {
  if (sb->timed_out) return KBOX_EXIT_TIMEOUT;
  if (sb->have_status) {
    if (WIFEXITED(sb->status)) return WEXITSTATUS(sb->status);
    if (WIFSIGNALED(sb->status)) return 128 + WTERMSIG(sb->status);
  }
  if (sb->kill_signal != 0) return 128 + sb->kill_signal;
  return KBOX_EXIT_RUNTIME;
}

long long kbox_sandbox_elapsed_ms(const struct kbox_sandbox *sb) {
  struct timespec now;
  if (sb->reaped || sb->released) now = sb->ended;
  else clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - sb->started.tv_sec) * 1000LL + (now.tv_nsec - sb->started.tv_nsec) / 1000000;
}

int kbox_sandbox_reserve(struct kbox_sandbox *sb, struct kbox_spec *spec, kbox_error_t *err) {
  sandbox_reset(sb, spec);
  return reserve_id(spec, &sb->id_lock, err);
}
