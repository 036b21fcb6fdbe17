/* The host side of a warm start: the same host steps as a cold start (id, cgroups, id maps, the
   detached mount trees), but the sandbox's process comes from a zygote's fork instead of clone3. */
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "cgroup/limits.h"
#include "sandbox/channel.h"
#include "sandbox/idmap.h"
#include "sandbox/mounts.h"
#include "security/security.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/trace.h"
#include "warm/child.h"
#include "warm/pool.h"
#include "warm/proto.h"
#include "warm/service.h"
#include "warm/trees.h"
#include "warm/warm.h"

#define STEP_MS 10000 /* a zygote that does not answer a step by then is wedged: go cold */

/* Environment variables read while the zygote imports: a kernel that sets them must start cold. */
static const char *const import_time_env[] = {"PYTHON", "OMP_", "OPENBLAS_", "MKL_", "MPL", "LD_", "NUMEXPR_", NULL};

/* Why spec cannot start warm: NULL when it asked to start cold (nothing to log), "" when it can. */
static const char *not_eligible(const struct kbox_spec *s) {
  if (s->kernel.cold) return NULL; /* asked for: no log line */
  if (getenv("KBOX_COLD") != NULL) return "KBOX_COLD is set";
  if (s->sec.loaded != NULL && s->sec.loaded->profile != NULL && s->sec.loaded->profile->no_warm)
    return "the security profile forbids warm starts (\"warm\": false)";
  if (s->kernel.cmd != NULL) return "--kernel-cmd is given (the zygote runs the default kernel)";
  if (s->sandbox.ns_flags != 0) return "not every namespace is available (kbox entrypoint)";
  for (size_t i = 0; i < s->sandbox.env.n; i++)
    for (size_t k = 0; import_time_env[k] != NULL; k++)
      if (strncmp(s->sandbox.env.v[i], import_time_env[k], strlen(import_time_env[k])) == 0)
        return "an --env variable is read at import time (PYTHON*, OMP_*, OPENBLAS_*, MKL_*, MPL*, LD_*)";
  return "";
}

/* Wait for one message on chan (with a pidfd when want_fd), within STEP_MS. */
static int recv_step(int chan, int want_type, int *fd, kbox_error_t *err) {
  struct pollfd p = {.fd = chan, .events = POLLIN};
  int r;
  do r = poll(&p, 1, STEP_MS); while (r < 0 && errno == EINTR);
  if (r == 0) return kbox_error_make(err, 0, "the zygote did not answer within %d s", STEP_MS / 1000);
  struct kbox_msg m;
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  long got = kbox_warm_recv(chan, &m, sizeof(m), fds, &n, err);
  if (got < 0) return -1;
  if (got == 0) return kbox_error_make(err, 0, "the zygote's fork ended during setup");
  if (got != (long)sizeof(m)) return kbox_error_make(err, 0, "a bad message from the zygote's fork");
  if (fd != NULL) *fd = n > 0 ? fds[0] : -1;
  for (int i = fd != NULL ? 1 : 0; i < n; i++) close(fds[i]);
  if (m.type == KBOX_MSG_ERROR) {
    m.text[sizeof(m.text) - 1] = '\0';
    return kbox_error_make(err, m.errno_, "%s", m.text);
  }
  if (m.type != want_type) return kbox_error_make(err, 0, "unexpected message %d from the zygote's fork", m.type);
  if (fd != NULL && *fd < 0) return kbox_error_make(err, 0, "the zygote's fork sent no pidfd");
  if (fd == NULL) return m.status;
  return 0;
}


/* Write the nested user namespace's maps (identity over the zygote's 0..65535; rootless, over its
   one id). Only a process in the parent namespace may, so a helper joins the zygote's user
   namespace first (rootless, the caller owns it: the zygote's server made it). */
static int write_nested_maps(pid_t pid, const struct kbox_spec *spec, kbox_error_t *err) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
  kbox_trace_step("warm: nested id maps: start");
  cleanup_close int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) return kbox_error_make(err, errno, "opening %s", path);
  cleanup_close int parent = ioctl(ns, NS_GET_PARENT);
  if (parent < 0) return kbox_error_make(err, errno, "the zygote's user namespace");
  pid_t helper = fork();
  if (helper < 0) return kbox_error_make(err, errno, "fork");
  if (helper == 0) {
    struct kbox_idmap map = {.deny_setgroups = false};
    snprintf(map.uid_map, sizeof(map.uid_map), "0 0 %u\n", KBOX_ID_RANGE);
    snprintf(map.gid_map, sizeof(map.gid_map), "0 0 %u\n", KBOX_ID_RANGE);
    if (spec->rootless) { /* the zygote's namespace maps one id, the caller's: the kernel's is the same one */
      map.deny_setgroups = true;
      snprintf(map.uid_map, sizeof(map.uid_map), "%u %u 1\n", spec->sandbox.uid, spec->sandbox.uid);
      snprintf(map.gid_map, sizeof(map.gid_map), "%u %u 1\n", spec->sandbox.gid, spec->sandbox.gid);
    }
    kbox_error_t e = NULL;
    _exit(setns(parent, CLONE_NEWUSER) == 0 && kbox_idmap_write(pid, &map, &e) == 0 ? 0 : 1);
  }
  int st = 0;
  while (waitpid(helper, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return kbox_error_make(err, 0, "writing the warm kernel's id maps");
  kbox_trace_step("warm: nested id maps written (helper joined the zygote's user namespace)");
  return 0;
}

/* Connect to the zygote of keydir. */
static int connect_zygote(const char *keydir, kbox_error_t *err) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (snprintf(a.sun_path, sizeof(a.sun_path), "%s/zygote.sock", keydir) >= (int)sizeof(a.sun_path))
    return kbox_error_make(err, 0, "%s is too long for a socket path", keydir);
  cleanup_close int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return kbox_error_make(err, errno, "socket");
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) return kbox_error_make(err, errno, "connecting to the zygote");
  return steal_fd(fd);
}

/* Send the request with the channel, our stderr and the mount trees. */
static int send_request(int zfd, const struct kbox_spec *spec, struct kbox_mounts *m, int chan, kbox_error_t *err) {
  cleanup_free char *req = NULL;
  size_t len = 0;
  if (kbox_warm_encode(spec, &req, &len, err) < 0) return -1;
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  fds[n++] = chan;
  if (spec->sandbox.rootfs.n + spec->sandbox.n_binds + 3 > KBOX_WARM_MAX_FDS) return kbox_error_make(err, 0, "too many layers and binds");
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++) fds[n++] = m->lower_fds[i];
  for (size_t i = 0; i < spec->sandbox.n_binds; i++) fds[n++] = m->bind_fds[i];
  if (spec->sandbox.workdir != NULL) fds[n++] = m->workdir_fd;
  return kbox_warm_send(zfd, req, len, fds, n, err);
}

/* GO, with our stderr for the kernel's stdout and stderr (as a cold kernel's), and the limits its
   pid 2 enforces with rlimits where no cgroup carries them (as a cold pid 1 learns with JOINED):
   which ones in status, their values in text. */
static int send_go(int chan, const struct kbox_cgroup *cg, kbox_error_t *err) {
  struct kbox_msg m = {.type = KBOX_MSG_GO, .status = (int)kbox_rlimits_plan_bits()};
  snprintf(m.text, sizeof(m.text), "%llu %llu", (unsigned long long)(cg->lim.memory + cg->lim.swap),
           (unsigned long long)cg->lim.pids);
  int fd = 2;
  return kbox_warm_send(chan, &m, sizeof(m), &fd, 1, err);
}

/* The fork itself: host steps, request, maps, cgroups, go; sb holds the kernel's pid 1 after. */
static int fork_kernel(struct kbox_sandbox *sb, struct kbox_spec *spec, const char *keydir, kbox_error_t *err) {
  kbox_trace_step("warm: a zygote is ready for this key");
  if (kbox_sandbox_reserve(sb, spec, err) < 0) return -1;
  kbox_trace_step("warm: id reserved");
  if (kbox_limits_setup(&spec->limits, spec->id, &sb->cgroup, err) < 0 || kbox_limits_finish(&spec->limits, sb->cgroup, err) < 0) return -1;
  kbox_trace_step("warm: cgroups made");
  if (sb->cgroup == NULL) return kbox_error_make(err, 0, "no limits planned");
  struct kbox_idmap map;
  if (kbox_idmap_compute(spec, &map, err) < 0) return -1;
  int workdir_fd = -1;
  if (!spec->rootless && spec->sandbox.workdir != NULL && kbox_idmap_bind_owned(spec->sandbox.workdir, spec, &map, &workdir_fd, err) < 0)
    return -1;
  struct kbox_mounts m;
  kbox_mounts_init(&m, spec, workdir_fd);
  int sp[2] = {-1, -1}, zfd = -1, middle = -1, rc = -1;
  if (spec->rootless) { /* not idmapped, as a cold rootless sandbox's */
    if (kbox_warm_open_trees(&m, err) < 0) goto out;
    kbox_trace_step("warm: layers and binds taken (open_tree in a user namespace of our own)");
  } else {
    if ((m.layer_userns = kbox_idmap_userns_fd(map.uid_map, map.gid_map, err)) < 0 || kbox_mounts_open_sources(&m, err) < 0)
      goto out;
    kbox_trace_step("warm: layers and binds taken (open_tree, idmapped)");
  }
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
    kbox_error_make(err, errno, "socketpair");
    goto out;
  }
  clock_gettime(CLOCK_MONOTONIC, &sb->started);
  if ((zfd = connect_zygote(keydir, err)) < 0 || send_request(zfd, spec, &m, sp[1], err) < 0) goto out;
  kbox_trace_step("warm: request sent to the zygote");
  close(sp[1]);
  sp[1] = -1;
  kbox_mounts_free(&m);
  sb->chan = sp[0];
  sp[0] = -1;
  if (recv_step(sb->chan, KBOX_WARM_MSG_MIDDLE, &middle, err) < 0) goto out;
  kbox_trace_step("warm: the fork's pidfd received");
  pid_t mid = kbox_warm_pidfd_pid(middle);
  if (mid <= 0) {
    kbox_error_make(err, 0, "the zygote's fork has no pid here");
    goto out;
  }
  if (write_nested_maps(mid, spec, err) < 0 || kbox_cgroup_attach(sb->cgroup, mid, true, err) < 0 ||
      send_go(sb->chan, sb->cgroup, err) < 0) {
    kill(mid, SIGKILL);
    goto out;
  }
  kbox_trace_step("warm: GO sent");
  if (recv_step(sb->chan, KBOX_WARM_MSG_PID1, &sb->pidfd, err) < 0) goto out;
  kbox_trace_step("warm: pid 1's pidfd received");
  sb->pid = kbox_warm_pidfd_pid(sb->pidfd);
  sb->foreign = true;
  int workload = recv_step(sb->chan, KBOX_MSG_STARTED, NULL, err);
  if (workload < 0) goto out;
  sb->workload_pid = workload;
  kbox_trace_step("warm: STARTED received");
  kbox_debug("warm: the kernel's sandbox was forked and built in %lld ms", kbox_sandbox_elapsed_ms(sb));
  rc = 0;
out:
  kbox_mounts_free(&m);
  if (sp[0] >= 0) close(sp[0]);
  if (sp[1] >= 0) close(sp[1]);
  if (zfd >= 0) close(zfd);
  if (middle >= 0) close(middle);
  return rc;
}

int kbox_warm_try(struct kbox_sandbox *sb, struct kbox_spec *spec) {
  const char *why = not_eligible(spec);
  if (why == NULL) return 0;
  if (why[0] != '\0') {
    kbox_info("warm start not possible (%s): starting cold", why);
    return 0;
  }
  kbox_trace_step("warm: run dir and broker sockets made, eligible");
  char keydir[PATH_MAX];
  kbox_error_t err = NULL;
  if (kbox_warm_key_dir(spec, keydir, sizeof(keydir), &err) < 0) {
    kbox_info("warm start not possible (%s): starting cold", err->msg);
    kbox_error_free(&err);
    return 0;
  }
  if (!kbox_warm_ready(keydir)) {
    kbox_info("warm start: no zygote for this image yet (starting one for the next kernels): starting cold");
    if (kbox_warm_spawn(spec, &err) < 0) kbox_error_free(&err);
    return 0;
  }
  /* The pool (pool.c); rootless zygotes keep none (a claim enters a pool kernel as root). */
  if (!spec->rootless && !kbox_warm_pool_holder() && kbox_warm_pool_claim(sb, spec, keydir) == 1) return 2;
  if (fork_kernel(sb, spec, keydir, &err) == 0) return 1;
  kbox_warn("warm start failed (%s): starting cold", err->msg);
  kbox_error_free(&err);
  /* The cold start makes cgroups of the same names: the warm attempt's reaper must not wake now and
     remove them; it keeps waiting (its pipe stays open) and cleans up with the cold one's at exit. */
  if (sb->cgroup != NULL && sb->cgroup->reaper_fd >= 0) {
    static int parked = -1;
    if (parked >= 0) close(parked);
    parked = sb->cgroup->reaper_fd;
    sb->cgroup->reaper_fd = -1;
  }
  kbox_sandbox_destroy(sb);
  return 0;
}
