/* The host probe: the verdict table and the order of the probes (clone3, the user namespace, each
   other namespace, the sandbox's own set-up steps in probe_sandbox.c, cgroups in cgroup_probe.c). */
#include "sandbox/probe.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/cgroup_probe.h"
#include "sandbox/idmap.h"
#include "sandbox/ns.h"
#include "sandbox/probe_child.h"
#include "sandbox/probe_sandbox.h"
#include "util/alloc.h"

struct feature_info {
  const char *key, *title;
  bool required;
  const char *disables;
};

static const struct feature_info features[KBOX_FEAT_COUNT] = {
    [KBOX_FEAT_USERNS] = {"userns", "user namespaces", true, "kbox run cannot start: the sandbox needs a user namespace of its own"},
    [KBOX_FEAT_PIDNS] = {"pidns", "pid namespace", true, "the sandbox would see and signal the host's processes (kbox run cannot start)"},
    [KBOX_FEAT_MOUNTNS] = {"mountns", "mount namespace", true, "no private filesystem view: kbox run cannot start"},
    [KBOX_FEAT_NETNS] = {"netns", "network namespace", true, "the sandbox would share the host's network (kbox run cannot start)"},
    [KBOX_FEAT_IPCNS] = {"ipcns", "ipc namespace", true, "the sandbox would share the host's System V IPC (kbox run cannot start)"},
    [KBOX_FEAT_UTSNS] = {"utsns", "uts namespace", true, "the sandbox would share the host's name (kbox run cannot start)"},
    [KBOX_FEAT_CGROUPNS] = {"cgroupns", "cgroup namespace", true, "the sandbox would see the host's cgroup paths (kbox run cannot start)"},
    [KBOX_FEAT_CGROUP] = {"cgroup", "cgroups", false, "limits fall back to rlimits (memory as address space, pids per user, cpu not enforced)"},
    [KBOX_FEAT_SECCOMP] = {"seccomp", "seccomp filters", true, "no syscall filtering: kbox run cannot start (or only with --seccomp=unconfined)"},
    [KBOX_FEAT_CAPS] = {"caps", "capability drop", true, "the workload cannot give up its capabilities: kbox run cannot start"},
    [KBOX_FEAT_HOSTNAME] = {"hostname", "hostname", true, "the sandbox cannot be given its own host name: kbox run cannot start"},
    [KBOX_FEAT_LOOPBACK] = {"loopback", "loopback network", true, "no 127.0.0.1 in the sandbox: kbox run cannot start"},
    [KBOX_FEAT_OVERLAY] = {"overlay", "overlayfs in a user namespace", true, "no overlay root: kbox run cannot start"},
    [KBOX_FEAT_PROC] = {"proc", "fresh /proc", true, "no /proc of the sandbox's own (pid isolation, masked paths): kbox run cannot start"},
    [KBOX_FEAT_IDMAP] = {"idmap", "idmapped mounts", false, "as root, --workdir fails (run kbox as the workdir's owner instead)"},
    [KBOX_FEAT_UNPRIV_USERNS] = {"unprivileged_userns", "unprivileged user namespaces", false, "kbox must run as root"},
    [KBOX_FEAT_CLONE3] = {"clone3", "clone3 / pidfd", true, "kbox run cannot start (Linux >= 5.5 is needed)"},
};

const char *kbox_feature_key(enum kbox_feature f) { return features[f].key; }
const char *kbox_feature_title(enum kbox_feature f) { return features[f].title; }
bool kbox_feature_required(enum kbox_feature f) { return features[f].required; }

const char *kbox_verdict_state_name(enum kbox_verdict_state s) {
  static const char *const names[] = {"ok", "partial", "missing"};
  return names[s];
}

void kbox_verdict_set(struct kbox_verdict *v, enum kbox_feature f, enum kbox_verdict_state s, int errno_,
                      const char *disables, const char *fmt, ...) {
  v->state = s;
  v->errno_ = errno_;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
  va_end(ap);
  const char *d = s == KBOX_VERDICT_OK ? "" : disables != NULL ? disables : features[f].disables;
  snprintf(v->disables, sizeof(v->disables), "%s", d);
}

static const uint64_t ns_flag[KBOX_FEAT_COUNT] = {
    [KBOX_FEAT_USERNS] = CLONE_NEWUSER, [KBOX_FEAT_PIDNS] = CLONE_NEWPID, [KBOX_FEAT_MOUNTNS] = CLONE_NEWNS,
    [KBOX_FEAT_NETNS] = CLONE_NEWNET,   [KBOX_FEAT_IPCNS] = CLONE_NEWIPC, [KBOX_FEAT_UTSNS] = CLONE_NEWUTS,
    [KBOX_FEAT_CGROUPNS] = CLONE_NEWCGROUP,
};

uint64_t kbox_probe_ns_flags(const struct kbox_probe *p) {
  uint64_t f = 0;
  for (int i = 0; i < KBOX_FEAT_COUNT; i++)
    if (ns_flag[i] != 0 && p->v[i].state != KBOX_VERDICT_MISSING) f |= ns_flag[i];
  return f;
}

json_t *kbox_verdict_json(const struct kbox_probe *p, enum kbox_feature f) {
  const struct kbox_verdict *v = &p->v[f];
  return json_pack("{s:s, s:s, s:s, s:b, s:b, s:s, s:s}", "key", features[f].key, "name", features[f].title, "state",
                   kbox_verdict_state_name(v->state), "ok", v->state == KBOX_VERDICT_OK, "required",
                   features[f].required, "detail", v->detail, "disables", v->disables);
}

/* One clone3 with flags (maps written when CLONE_NEWUSER); 0 or -1 with err. */
static int try_clone(const struct kbox_spec *spec, uint64_t flags, kbox_error_t *err) {
  struct kbox_probe_job job = {.ns_flags = flags, .cgroup_fd = -1};
  return kbox_probe_spawn(spec, &job, NULL, err);
}

/* The cause of a failed probe in a few words: the errno text, else the message. */
static const char *cause(const kbox_error_t err) { return err->errno_ != 0 ? strerror(err->errno_) : err->msg; }

static void probe_userns(struct kbox_probe *p, const struct kbox_spec *spec) {
  kbox_error_t err = NULL;
  struct kbox_spec s = *spec;
  s.sandbox.ns_flags = CLONE_NEWUSER;
  struct kbox_idmap map;
  if (try_clone(spec, CLONE_NEWUSER, &err) < 0) {
    kbox_verdict_set(&p->v[KBOX_FEAT_USERNS], KBOX_FEAT_USERNS, KBOX_VERDICT_MISSING, err->errno_, NULL,
                     "creating a user namespace: %s", err->msg);
    kbox_error_free(&err);
  } else if (kbox_idmap_compute(&s, &map, &err) == 0) {
    map.uid_map[strcspn(map.uid_map, "\n")] = '\0';
    kbox_verdict_set(&p->v[KBOX_FEAT_USERNS], KBOX_FEAT_USERNS, KBOX_VERDICT_OK, 0, NULL,
                     "a user namespace with the sandbox's id map (uid_map \"%s\")", map.uid_map);
  } else {
    kbox_error_free(&err);
  }
}

/* Each other namespace, inside a user namespace when that works (as kbox run creates them). */
static void probe_namespaces(struct kbox_probe *p, const struct kbox_spec *spec) {
  uint64_t base = p->v[KBOX_FEAT_USERNS].state == KBOX_VERDICT_OK ? CLONE_NEWUSER : 0;
  for (int f = KBOX_FEAT_PIDNS; f <= KBOX_FEAT_CGROUPNS; f++) {
    kbox_error_t err = NULL;
    if (try_clone(spec, base | ns_flag[f], &err) == 0) {
      kbox_verdict_set(&p->v[f], f, KBOX_VERDICT_OK, 0, NULL, "available%s", base ? "" : " (without a user namespace)");
      continue;
    }
    kbox_verdict_set(&p->v[f], f, KBOX_VERDICT_MISSING, err->errno_, NULL, "unshare: %s", cause(err));
    kbox_error_free(&err);
  }
}

/* As root: would rootless kbox work for an unprivileged user (nobody)? The same clone and maps
   as a rootless `kbox run`, in a child that dropped to uid 65534. */
static void probe_unprivileged(struct kbox_probe *p, const struct kbox_spec *spec) {
  struct kbox_verdict *v = &p->v[KBOX_FEAT_UNPRIV_USERNS];
  if (geteuid() != 0) {
    *v = p->v[KBOX_FEAT_USERNS];
    if (v->state == KBOX_VERDICT_OK) snprintf(v->detail, sizeof(v->detail), "available: you run kbox rootless");
    return;
  }
  int pfd[2];
  if (pipe(pfd) < 0) return;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    struct kbox_spec s = *spec;
    s.rootless = true;
    s.host_uid = s.host_gid = 65534;
    kbox_error_t err = NULL;
    if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
      kbox_error_make(&err, errno, "becoming uid 65534");
    else if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0) /* as after the execve of a rootless kbox */
      kbox_error_make(&err, errno, "prctl(PR_SET_DUMPABLE)");
    else if (try_clone(&s, CLONE_NEWUSER, &err) == 0)
      _exit(0);
    dprintf(pfd[1], "%s", cause(err));
    _exit(1);
  }
  close(pfd[1]);
  char why[256] = "";
  ssize_t n = pid > 0 ? read(pfd[0], why, sizeof(why) - 1) : -1;
  why[n > 0 ? n : 0] = '\0';
  close(pfd[0]);
  int st = 0;
  if (pid > 0) waitpid(pid, &st, 0);
  if (pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
    kbox_verdict_set(v, KBOX_FEAT_UNPRIV_USERNS, KBOX_VERDICT_OK, 0, NULL, "available: rootless kbox works");
  else
    kbox_verdict_set(v, KBOX_FEAT_UNPRIV_USERNS, KBOX_VERDICT_MISSING, 0, NULL, "refused (%s)", why);
}

void kbox_probe_run(struct kbox_probe *p, const struct kbox_spec *spec, bool host_facts) {
  memset(p, 0, sizeof(*p));
  for (int f = 0; f < KBOX_FEAT_COUNT; f++)
    kbox_verdict_set(&p->v[f], f, KBOX_VERDICT_MISSING, 0, NULL, "not probed");
  kbox_error_t err = NULL;
  if (try_clone(spec, 0, &err) < 0) {
    kbox_verdict_set(&p->v[KBOX_FEAT_CLONE3], KBOX_FEAT_CLONE3, KBOX_VERDICT_MISSING, err->errno_, NULL, "%s", err->msg);
    for (int f = 0; f < KBOX_FEAT_CLONE3; f++)
      kbox_verdict_set(&p->v[f], f, KBOX_VERDICT_MISSING, err->errno_, NULL, "not probed: clone3 failed (%s)", cause(err));
    kbox_error_free(&err);
    return;
  }
  kbox_verdict_set(&p->v[KBOX_FEAT_CLONE3], KBOX_FEAT_CLONE3, KBOX_VERDICT_OK, 0, NULL, "available");
  probe_userns(p, spec);
  probe_namespaces(p, spec);
  if (host_facts) probe_unprivileged(p, spec);
  kbox_probe_sandbox(p, spec, kbox_probe_ns_flags(p), host_facts);
  kbox_probe_cgroup(&p->v[KBOX_FEAT_CGROUP], spec);
}

/* More than one thread in this process? (clone3 from a threaded process may hang the child.) */
static bool threaded(void) {
  DIR *d = opendir("/proc/self/task");
  if (d == NULL) return false;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
  closedir(d);
  return n > 1;
}

void kbox_probe_explain_failure(const struct kbox_spec *spec, kbox_error_t *err) {
  if (*err == NULL || (*err)->exit_code != KBOX_EXIT_RUNTIME || threaded()) return;
  struct kbox_probe *p = xcalloc(1, sizeof(*p));
  kbox_probe_run(p, spec, false);
  char list[512] = "";
  size_t off = 0;
  for (int f = 0; f < KBOX_FEAT_COUNT; f++) {
    if (!features[f].required || p->v[f].state != KBOX_VERDICT_MISSING) continue;
    int w = snprintf(list + off, sizeof(list) - off, "%s%s", off ? ", " : "", features[f].title);
    if (w > 0 && (size_t)w < sizeof(list) - off) off += (size_t)w;
  }
  free(p);
  if (off > 0) kbox_error_hint(err, "this host refuses what the sandbox needs: %s (missing; 'kbox doctor' shows each step's cause)", list);
}
