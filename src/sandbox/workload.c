#include "sandbox/workload.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "sandbox/caps.h"
#include "sandbox/channel.h"
#include "security/security.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/envfile.h"
#include "util/proc.h"
#include "util/trace.h"

#define KBOX_IMAGE_ENV_FILE "/etc/kbox/env" /* inside the sandbox, after pivot_root */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void kbox_workload_env(const struct kbox_spec *spec, const char *home, struct kbox_strv *env) {
  kbox_strv_setenv(env, "PATH", DEFAULT_PATH);
  kbox_strv_setenv(env, "HOME", home);
  kbox_strv_setenv(env, "LANG", "C.UTF-8");
  const char *term = getenv("TERM");
  kbox_strv_setenv(env, "TERM", term != NULL && strlen(term) < 64 ? term : "dumb");
  /* Defaults the image ships (mkrootfs: MPLCONFIGDIR of the prebuilt font cache, locale); --env wins. */
  kbox_error_t image_env_err = NULL;
  if (access(KBOX_IMAGE_ENV_FILE, R_OK) == 0 && kbox_envfile_load(KBOX_IMAGE_ENV_FILE, env, &image_env_err) < 0)
    kbox_error_free(&image_env_err);
  for (size_t i = 0; i < spec->sandbox.env.n; i++) {
    const char *eq = strchr(spec->sandbox.env.v[i], '=');
    cleanup_free char *key = xstrndup(spec->sandbox.env.v[i], (size_t)(eq - spec->sandbox.env.v[i]));
    kbox_strv_setenv(env, key, eq + 1);
  }
}

/* Report a failure to pid 1 through the exec-error pipe and exit. */
__attribute__((noreturn)) static void fail(int errfd, kbox_error_t *err) {
  struct kbox_msg m = {.type = KBOX_MSG_ERROR, .exit_code = (*err)->exit_code, .errno_ = (*err)->errno_};
  snprintf(m.text, sizeof(m.text), "%s", (*err)->msg);
  if (write(errfd, &m, sizeof(m)) < 0) _exit(KBOX_EXIT_RUNTIME);
  _exit(m.exit_code);
}

static int set_limits(const struct kbox_spec *spec, kbox_error_t *err) {
  struct rlimit core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &core) < 0) return kbox_error_make(err, errno, "setrlimit(RLIMIT_CORE)");
  struct rlimit nofile = {spec->limits.nofile, spec->limits.nofile};
  if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) return kbox_error_make(err, errno, "setrlimit(RLIMIT_NOFILE, %llu)", (unsigned long long)spec->limits.nofile);
  return kbox_rlimits_apply(err); /* memory/pids when no cgroup carries them */
}

int kbox_workload_identity(const struct kbox_spec *spec, kbox_error_t *err) {
  if (setgroups(0, NULL) < 0 && errno != EPERM) return kbox_error_make(err, errno, "setgroups");
  if (setresgid(spec->sandbox.gid, spec->sandbox.gid, spec->sandbox.gid) < 0) return kbox_error_make(err, errno, "setgid %u", spec->sandbox.gid);
  if (setresuid(spec->sandbox.uid, spec->sandbox.uid, spec->sandbox.uid) < 0) return kbox_error_make(err, errno, "setuid %u", spec->sandbox.uid);
  return 0;
}

/* execve CMD, searching PATH of the sandbox's environment when CMD has no '/'. */
static int exec_command(char **argv, struct kbox_strv *env, kbox_error_t *err) {
  const char *cmd = argv[0];
  if (strchr(cmd, '/') != NULL) {
    execve(cmd, argv, env->v);
    int e = errno;
    return kbox_error_make_code(err, e == ENOENT ? KBOX_EXIT_NOTFOUND : KBOX_EXIT_NOEXEC, e,
                                "cannot execute %s", cmd);
  }
  const char *path = kbox_strv_getenv(env, "PATH");
  cleanup_free char *copy = xstrdup(path ? path : DEFAULT_PATH);
  int seen_eacces = 0;
  char *save = NULL;
  for (char *dir = strtok_r(copy, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
    char full[4096];
    snprintf(full, sizeof(full), "%s/%s", dir, cmd);
    execve(full, argv, env->v);
    if (errno == EACCES || errno == ENOEXEC || errno == EPERM) seen_eacces = errno;
  }
  if (seen_eacces)
    return kbox_error_make_code(err, KBOX_EXIT_NOEXEC, seen_eacces, "cannot execute %s", cmd);
  return kbox_error_make_code(err, KBOX_EXIT_NOTFOUND, 0, "%s: command not found in the sandbox's PATH", cmd);
}

int kbox_workload_prepare(const struct kbox_spec *spec, const char *home, struct kbox_strv *env, kbox_error_t *err) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  if (setsid() < 0 && errno != EPERM) return kbox_error_make(err, errno, "setsid");
  kbox_workload_env(spec, home, env);
  const char *cwd = spec->sandbox.workdir ? spec->sandbox.workdir : home;
  if (set_limits(spec, err) < 0) return -1;
  if (kbox_caps_drop_bounding(0, err) < 0) return -1;
  if (kbox_workload_identity(spec, err) < 0) return -1;
  if (chdir(cwd) < 0 && chdir("/") < 0) return kbox_error_make(err, errno, "chdir %s", cwd);
  if (kbox_caps_finish(0, err) < 0) return -1;
  return 0;
}

void kbox_workload_exec(const struct kbox_spec *spec, const char *home, int errfd) {
  kbox_error_t err = NULL;
  struct kbox_strv env = {0};
  if (kbox_workload_prepare(spec, home, &env, &err) < 0) fail(errfd, &err);
  if (kbox_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    kbox_error_make(&err, errno, "close_range");
    fail(errfd, &err);
  }
  kbox_trace_step("env, rlimits, identity, capabilities dropped");
  /* The trace's last line is printed before the filter: after it, only exec. */
  kbox_trace_step("loading the seccomp filter, then execve");
  /* Last step before execve: the seccomp filter (nothing may run after it but exec). */
  if (kbox_security_apply(&spec->sec, &err) < 0) fail(errfd, &err);
  exec_command(spec->sandbox.argv.v, &env, &err);
  fail(errfd, &err);
}
