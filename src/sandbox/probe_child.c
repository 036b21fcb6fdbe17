#include "sandbox/probe_child.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/idmap.h"
#include "sandbox/ns.h"
#include "util/cleanup.h"

/* One step's result, child -> parent. feature -1: the child could not start its steps. */
struct step_msg {
  int feature;
  int state;
  int errno_;
  char text[384];
};

enum { PROBE_TIMEOUT_MS = 30000 };

void kbox_probe_report(int chan, int feature, enum kbox_verdict_state s, int errno_, const char *fmt, ...) {
  struct step_msg m = {.feature = feature, .state = (int)s, .errno_ = errno_};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m.text, sizeof(m.text), fmt, ap);
  va_end(ap);
  if (send(chan, &m, sizeof(m), MSG_NOSIGNAL) < 0) _exit(KBOX_EXIT_RUNTIME);
}

void kbox_probe_report_result(int chan, int feature, kbox_error_t *err, const char *ok_detail) {
  if (*err == NULL) {
    kbox_probe_report(chan, feature, KBOX_VERDICT_OK, 0, "%s", ok_detail);
    return;
  }
  kbox_probe_report(chan, feature, KBOX_VERDICT_MISSING, (*err)->errno_, "%s", (*err)->msg);
  kbox_error_free(err);
}

/* The child: wait for GO (maps written), take the mapped identity as pid 1 does, run the steps. */
__attribute__((noreturn)) static void child_main(const struct kbox_spec *spec, struct kbox_probe_job *job, int chan) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  char go = 0;
  if (read(chan, &go, 1) != 1) _exit(KBOX_EXIT_RUNTIME);
  if (job->ns_flags & CLONE_NEWUSER) {
    uid_t uid = spec->rootless ? spec->sandbox.uid : 0;
    gid_t gid = spec->rootless ? spec->sandbox.gid : 0;
    if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
      kbox_probe_report(chan, -1, KBOX_VERDICT_MISSING, errno, "taking uid %u in the new user namespace: %s", uid, strerror(errno));
      _exit(KBOX_EXIT_RUNTIME);
    }
  }
  if (job->child != NULL) job->child(chan, job->arg);
  _exit(0);
}

/* Store one message; false (with err) for the child's start-up failure. */
static bool store(const struct step_msg *m, struct kbox_probe_job *job, struct kbox_probe *p, kbox_error_t *err) {
  if (m->feature < 0) {
    kbox_error_make(err, 0, "%s", m->text);
    (*err)->errno_ = m->errno_;
    return false;
  }
  struct kbox_verdict *v = NULL;
  int f = m->feature;
  if (f >= KBOX_PROBE_ASPECT_BASE && f < KBOX_PROBE_ASPECT_BASE + KBOX_PROBE_ASPECTS) {
    v = &job->aspect[f - KBOX_PROBE_ASPECT_BASE];
    job->aspect_seen[f - KBOX_PROBE_ASPECT_BASE] = true;
  } else if (f < KBOX_FEAT_COUNT && p != NULL) {
    v = &p->v[f];
  }
  if (v != NULL) kbox_verdict_set(v, (enum kbox_feature)(f < KBOX_FEAT_COUNT ? f : 0), (enum kbox_verdict_state)m->state,
                                  m->errno_, NULL, "%s", m->text);
  return true;
}

/* Read the child's reports until it closes the channel (or a generous timeout). */
static int collect(int chan, pid_t pid, struct kbox_probe_job *job, struct kbox_probe *p, kbox_error_t *err) {
  for (;;) {
    struct pollfd pfd = {.fd = chan, .events = POLLIN};
    int n = poll(&pfd, 1, PROBE_TIMEOUT_MS);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      kill(pid, SIGKILL);
      return kbox_error_make(err, 0, "the probe child did not finish within %d s", PROBE_TIMEOUT_MS / 1000);
    }
    struct step_msg m;
    ssize_t r = recv(chan, &m, sizeof(m), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    if (r != (ssize_t)sizeof(m)) continue;
    m.text[sizeof(m.text) - 1] = '\0';
    if (!store(&m, job, p, err)) return -1;
  }
}

/* In the parent, between clone3 and GO: the id maps (as kbox_sandbox_start writes them), the hook. */
static int after_clone(const struct kbox_spec *spec, struct kbox_probe_job *job, pid_t pid, kbox_error_t *err) {
  if (job->ns_flags & CLONE_NEWUSER) {
    struct kbox_spec s = *spec;
    s.sandbox.ns_flags = job->ns_flags;
    struct kbox_idmap map;
    if (kbox_idmap_compute(&s, &map, err) < 0 || kbox_idmap_write(pid, &map, err) < 0) return -1;
  }
  return job->cloned != NULL ? job->cloned(pid, job->arg, err) : 0;
}

int kbox_probe_spawn(const struct kbox_spec *spec, struct kbox_probe_job *job, struct kbox_probe *p, kbox_error_t *err) {
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) return kbox_error_make(err, errno, "socketpair");
  fflush(NULL);
  int pidfd = -1;
  pid_t pid = kbox_clone3(job->ns_flags, job->cgroup_fd, &pidfd, err);
  if (pid == 0) {
    close(sp[0]);
    child_main(spec, job, sp[1]);
  }
  close(sp[1]);
  cleanup_close int chan = sp[0];
  if (pid < 0) return -1;
  close(pidfd);
  int rc = after_clone(spec, job, pid, err);
  if (rc == 0 && write(chan, "g", 1) != 1) rc = kbox_error_make(err, errno, "starting the probe child");
  if (rc == 0) rc = collect(chan, pid, job, p, err);
  else kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
  return rc;
}
