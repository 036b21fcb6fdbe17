#include "sandbox/probe_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/caps.h"
#include "sandbox/idmap.h"
#include "sandbox/mounts.h"
#include "sandbox/net.h"
#include "sandbox/probe_child.h"
#include "sandbox/workload.h"
#include "security/security.h"
#include "util/alloc.h"

/* Aspects of the idmap verdict, composed by the parent. */
enum { ASPECT_LAYERS, ASPECT_WORKDIR, ASPECT_WRITE };

struct sandbox_probe {
  struct kbox_spec spec;      /* the caller's spec with the probe's ns_flags and workdir */
  struct kbox_mounts mounts;  /* as kbox_sandbox_start prepares them */
  bool sources_failed;        /* the parent could not take the layers: no overlay to try */
  uid_t layer_owner;          /* host owner of the bottom layer */
  bool shared;                /* in the child: the workdir is mounted in the new root */
  char file[4200];            /* what the workload step creates in the workdir */
};

static void aspect_report(int chan, int aspect, enum kbox_verdict_state s, const char *text) {
  kbox_probe_report(chan, KBOX_PROBE_ASPECT_BASE + aspect, s, 0, "%s", text);
}

/* Root mode: do files of the bottom layer keep their owner inside (the layer is idmapped)? */
static void check_layers(int chan, const struct sandbox_probe *sp) {
  if (sp->mounts.layer_userns < 0 || sp->layer_owner >= KBOX_ID_RANGE) return;
  char path[128], text[256];
  snprintf(path, sizeof(path), "%.60s/lower/0", sp->mounts.scratch);
  struct stat st = {0};
  int r = stat(path, &st);
  if (r == 0 && st.st_uid == sp->layer_owner) {
    aspect_report(chan, ASPECT_LAYERS, KBOX_VERDICT_OK, "");
    return;
  }
  snprintf(text, sizeof(text), "the rootfs layers are not idmapped (files of host uid %u appear owned by uid %d inside)",
           sp->layer_owner, r == 0 ? (int)st.st_uid : -1);
  aspect_report(chan, ASPECT_LAYERS, KBOX_VERDICT_PARTIAL, text);
}

/* The overlay root as init builds it; false when it failed (reported). */
static bool step_rootfs(int chan, struct sandbox_probe *sp) {
  if (sp->sources_failed) return false;
  struct kbox_mounts *m = &sp->mounts;
  kbox_error_t err = NULL;
  if (m->lower_fds == NULL) kbox_mounts_open_sources(m, &err);
  if (err == NULL) kbox_mounts_rootfs(m, &err);
  bool ok = err == NULL;
  kbox_probe_report_result(chan, KBOX_FEAT_OVERLAY, &err, "the overlay root mounts (userxattr, on the given layers)");
  if (ok) check_layers(chan, sp);
  return ok;
}

/* Without an overlay root: a plain directory root, so the later steps can still be tried. */
static bool fallback_root(const struct kbox_mounts *m) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return false; /* never touch the host's mounts */
  if (mount("kbox-probe", m->scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) return false;
  static const char *const dirs[] = {"root", "tmp", "shm"};
  for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
    char p[128];
    snprintf(p, sizeof(p), "%.60s/%s", m->scratch, dirs[i]);
    if (mkdir(p, 01777) < 0) return false;
  }
  return mount(m->root, m->root, NULL, MS_BIND, NULL) == 0;
}

/* /proc, /sys, /dev, the workdir and pivot_root, as init does them after the overlay. */
static void step_system(int chan, struct sandbox_probe *sp, bool have_root) {
  kbox_error_t err = NULL;
  if (!have_root && !fallback_root(&sp->mounts)) {
    kbox_probe_report(chan, KBOX_FEAT_PROC, KBOX_VERDICT_MISSING, errno, "not probed: no root to build it in (%s)", strerror(errno));
    return;
  }
  kbox_mounts_system(&sp->mounts, &err);
  kbox_probe_report_result(chan, KBOX_FEAT_PROC, &err, "a fresh /proc with masked and read-only paths, /sys read-only, a minimal /dev");
  if (sp->spec.sandbox.workdir != NULL && kbox_mounts_shared(&sp->mounts, &err) < 0) {
    aspect_report(chan, ASPECT_WORKDIR, KBOX_VERDICT_MISSING, err->msg);
    kbox_error_free(&err);
  } else {
    sp->shared = sp->spec.sandbox.workdir != NULL;
  }
  if (kbox_mounts_pivot(&sp->mounts, &err) < 0 && have_root) {
    kbox_probe_report(chan, KBOX_FEAT_OVERLAY, KBOX_VERDICT_MISSING, err->errno_, "switching to the new root: %s", err->msg);
  }
  kbox_error_free(&err);
}

/* Capabilities, identity, a file in the workdir, no_new_privs and the seccomp filter, in the
   workload's order. */
static void step_workload(int chan, const struct sandbox_probe *sp) {
  const struct kbox_spec *s = &sp->spec;
  kbox_error_t err = NULL;
  if (s->sandbox.workdir != NULL && !sp->shared)
    aspect_report(chan, ASPECT_WRITE, KBOX_VERDICT_MISSING, "not probed: the workdir could not be mounted in the sandbox");
  if (kbox_caps_drop_bounding(0, &err) == 0 && kbox_workload_identity(s, &err) == 0 && sp->shared) {
    int fd = open(sp->file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    char text[4400];
    snprintf(text, sizeof(text), "creating a file in the workdir as uid %u: %s", s->sandbox.uid, fd < 0 ? strerror(errno) : "ok");
    aspect_report(chan, ASPECT_WRITE, fd < 0 ? KBOX_VERDICT_MISSING : KBOX_VERDICT_OK, text);
    if (fd >= 0) close(fd);
  }
  if (err == NULL) kbox_caps_finish(0, &err);
  bool caps_ok = err == NULL;
  kbox_probe_report_result(chan, KBOX_FEAT_CAPS, &err, "every capability dropped, securebits locked, no_new_privs set");
  if (!caps_ok) return;
  if (s->sec.seccomp_unconfined) {
    kbox_probe_report(chan, KBOX_FEAT_SECCOMP, KBOX_VERDICT_MISSING, 0, "--seccomp=unconfined: no filter is installed");
    return;
  }
  if (kbox_security_apply(&s->sec, &err) < 0) {
    kbox_probe_report_result(chan, KBOX_FEAT_SECCOMP, &err, "");
    return;
  }
  int mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
  kbox_probe_report(chan, KBOX_FEAT_SECCOMP, KBOX_VERDICT_OK, 0, "the profile's filter is installed (seccomp mode %d)", mode);
}

/* In the probe child (pid 1 of the new namespaces): init's steps in init's order. */
static void sandbox_child(int chan, void *arg) {
  struct sandbox_probe *sp = arg;
  kbox_error_t err = NULL;
  if (sethostname(sp->spec.sandbox.hostname, strlen(sp->spec.sandbox.hostname)) < 0) kbox_error_make(&err, errno, "sethostname");
  kbox_probe_report_result(chan, KBOX_FEAT_HOSTNAME, &err, "the sandbox gets its own host name");
  kbox_net_loopback_up(&err);
  kbox_probe_report_result(chan, KBOX_FEAT_LOOPBACK, &err, "lo is up in the sandbox's network namespace");
  bool have_root = step_rootfs(chan, sp);
  step_system(chan, sp, have_root);
  step_workload(chan, sp);
}

static void set_aspect(struct kbox_probe_job *job, int aspect, enum kbox_verdict_state s, const char *text) {
  kbox_verdict_set(&job->aspect[aspect], KBOX_FEAT_IDMAP, s, 0, NULL, "%s", text);
  job->aspect_seen[aspect] = true;
}

/* Why files the sandbox user creates in the workdir do not keep the directory's owner ("" if they do). */
static void owner_problem(const struct sandbox_probe *sp, const struct kbox_probe_job *job, uid_t owner, char *buf, size_t n) {
  struct stat st;
  buf[0] = '\0';
  if (sp->sources_failed && !job->aspect_seen[ASPECT_WRITE])
    snprintf(buf, n, "not probed: kbox run could not take the sandbox's source trees (see overlayfs)");
  else if (!job->aspect_seen[ASPECT_WRITE]) snprintf(buf, n, "the probe ended before it wrote in the workdir");
  else if (job->aspect[ASPECT_WRITE].state != KBOX_VERDICT_OK) snprintf(buf, n, "%s", job->aspect[ASPECT_WRITE].detail);
  else if (stat(sp->file, &st) < 0) snprintf(buf, n, "the file the sandbox wrote is not in the workdir: %s", strerror(errno));
  else if (st.st_uid != owner)
    snprintf(buf, n, "a file the sandbox user created in the workdir belongs to uid %u, not to the directory's owner %u",
             st.st_uid, owner);
}

/* The idmap verdict from the workdir bind, the file's owner on the host and the layers' ids. */
static void compose_idmap(struct kbox_verdict *v, const struct sandbox_probe *sp, const struct kbox_probe_job *job,
                          uid_t owner) {
  char problem[512];
  if (sp->spec.sandbox.workdir != NULL) owner_problem(sp, job, owner, problem, sizeof(problem));
  else problem[0] = '\0'; /* no workdir to share: only the layers count */
  const struct kbox_verdict *bind = &job->aspect[ASPECT_WORKDIR], *layers = &job->aspect[ASPECT_LAYERS];
  bool root_userns = !sp->spec.rootless && (sp->spec.sandbox.ns_flags & CLONE_NEWUSER);
  if (job->aspect_seen[ASPECT_WORKDIR] && bind->state != KBOX_VERDICT_OK)
    kbox_verdict_set(v, KBOX_FEAT_IDMAP, KBOX_VERDICT_MISSING, 0, NULL, "%s", bind->detail);
  else if (problem[0] != '\0')
    kbox_verdict_set(v, KBOX_FEAT_IDMAP, KBOX_VERDICT_MISSING, 0, "files the sandbox creates in --workdir do not keep the directory's owner", "%s", problem);
  else if (!root_userns)
    kbox_verdict_set(v, KBOX_FEAT_IDMAP, KBOX_VERDICT_OK, 0, NULL, "not needed: %s, so workdir files keep their owner",
                     sp->spec.rootless ? "rootless, the caller is the sandbox user" : "without a user namespace ids are not shifted");
  else if (job->aspect_seen[ASPECT_LAYERS] && layers->state != KBOX_VERDICT_OK)
    kbox_verdict_set(v, KBOX_FEAT_IDMAP, KBOX_VERDICT_PARTIAL, 0, "the image's files appear owned by nobody inside (the workload cannot rely on their ownership)",
                     "the workdir is idmapped (its files keep their owner), but %s", layers->detail);
  else
    kbox_verdict_set(v, KBOX_FEAT_IDMAP, KBOX_VERDICT_OK, 0, NULL, "the workdir and the rootfs layers are idmapped: files keep their owner");
}

/* The parent's part before the clone, as kbox_sandbox_start: idmapped workdir, layer trees. */
static void prepare_sources(struct sandbox_probe *sp, struct kbox_probe_job *job, struct kbox_probe *p) {
  struct kbox_spec *s = &sp->spec;
  bool root_userns = !s->rootless && (s->sandbox.ns_flags & CLONE_NEWUSER);
  kbox_error_t err = NULL;
  struct kbox_idmap map;
  int workdir_fd = -1;
  if (kbox_idmap_compute(s, &map, &err) < 0) {
    sp->sources_failed = true;
    kbox_verdict_set(&p->v[KBOX_FEAT_OVERLAY], KBOX_FEAT_OVERLAY, KBOX_VERDICT_MISSING, 0, NULL, "%s", err->msg);
    kbox_error_free(&err);
  } else if (root_userns && s->sandbox.workdir != NULL) {
    if (kbox_idmap_bind_owned(s->sandbox.workdir, s, &map, &workdir_fd, &err) < 0) {
      set_aspect(job, ASPECT_WORKDIR, KBOX_VERDICT_MISSING, err->msg);
      kbox_error_free(&err);
      s->sandbox.workdir = NULL;
    } else {
      set_aspect(job, ASPECT_WORKDIR, KBOX_VERDICT_OK, "");
    }
  }
  kbox_mounts_init(&sp->mounts, s, workdir_fd);
  if (root_userns && !sp->sources_failed &&
      (sp->mounts.layer_userns = kbox_idmap_userns_fd(map.uid_map, map.gid_map, &err)) < 0)
    sp->sources_failed = true;
  if (!s->rootless && !sp->sources_failed && kbox_mounts_open_sources(&sp->mounts, &err) < 0) sp->sources_failed = true;
  if (sp->sources_failed) s->sandbox.workdir = NULL; /* its tree was not taken either */
  if (err != NULL) {
    kbox_verdict_set(&p->v[KBOX_FEAT_OVERLAY], KBOX_FEAT_OVERLAY, KBOX_VERDICT_MISSING, err->errno_, NULL, "%s", err->msg);
    kbox_error_free(&err);
  }
  struct stat st;
  sp->layer_owner = s->sandbox.rootfs.n > 0 && stat(s->sandbox.rootfs.v[0], &st) == 0 ? st.st_uid : (uid_t)-1;
}

static const enum kbox_feature sandbox_steps[] = {KBOX_FEAT_HOSTNAME, KBOX_FEAT_LOOPBACK, KBOX_FEAT_OVERLAY,
                                                  KBOX_FEAT_PROC, KBOX_FEAT_IDMAP, KBOX_FEAT_CAPS, KBOX_FEAT_SECCOMP};
#define N_STEPS (sizeof(sandbox_steps) / sizeof(sandbox_steps[0]))

void kbox_probe_sandbox(struct kbox_probe *p, const struct kbox_spec *spec, uint64_t ns_flags, bool try_workdir) {
  for (size_t i = 0; i < N_STEPS; i++)
    kbox_verdict_set(&p->v[sandbox_steps[i]], sandbox_steps[i], KBOX_VERDICT_MISSING, 0, NULL,
                     "not probed: the probe sandbox ended before this step");
  struct sandbox_probe *sp = xcalloc(1, sizeof(*sp));
  sp->spec = *spec;
  sp->spec.sandbox.ns_flags = ns_flags;
  char tmpdir[64] = "";
  if (sp->spec.sandbox.workdir == NULL && try_workdir) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kbox-probe-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) tmpdir[0] = '\0';
    else sp->spec.sandbox.workdir = tmpdir;
  }
  struct stat wst = {.st_uid = (uid_t)-1};
  if (sp->spec.sandbox.workdir != NULL) stat(sp->spec.sandbox.workdir, &wst);
  snprintf(sp->file, sizeof(sp->file), "%s/.kbox-probe.%d", sp->spec.sandbox.workdir ? sp->spec.sandbox.workdir : "/nonexistent", (int)getpid());
  struct kbox_probe_job job = {.ns_flags = ns_flags, .cgroup_fd = -1, .child = sandbox_child, .arg = sp};
  prepare_sources(sp, &job, p);
  kbox_error_t err = NULL;
  if (kbox_probe_spawn(&sp->spec, &job, p, &err) < 0) {
    for (size_t i = 0; i < N_STEPS; i++)
      kbox_verdict_set(&p->v[sandbox_steps[i]], sandbox_steps[i], KBOX_VERDICT_MISSING, err->errno_, NULL,
                       "not probed: creating the probe sandbox failed (%s)", err->msg);
    kbox_error_free(&err);
  } else {
    /* rootless, the caller is the sandbox user: its files are the caller's (README, "What the sandbox is") */
    compose_idmap(&p->v[KBOX_FEAT_IDMAP], sp, &job, sp->spec.rootless ? geteuid() : wst.st_uid);
  }
  kbox_mounts_free(&sp->mounts);
  unlink(sp->file);
  if (tmpdir[0] != '\0') rmdir(tmpdir);
  free(sp);
}
