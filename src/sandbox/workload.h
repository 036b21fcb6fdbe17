/* Turning a forked process inside the sandbox into the workload: identity, env, limits, exec. */
#ifndef KBOX_WORKLOAD_H
#define KBOX_WORKLOAD_H

#include "spec/spec.h"
#include "util/strv.h"

/* The environment the workload sees: PATH, HOME, LANG, TERM, then --env/--env-file values. */
void kbox_workload_env(const struct kbox_spec *spec, const char *home, struct kbox_strv *env);
/* The workload's identity: no supplementary groups, spec's gid and uid (also used by the host probe). */
int kbox_workload_identity(const struct kbox_spec *spec, kbox_error_t *err);
/* Every step of becoming the workload short of closing fds, seccomp and execve: signals reset, own
   session, env computed into *env, rlimits, capabilities dropped, identity, cwd, no_new_privs.
   Also used by a warm kernel (src/warm), which continues in the same process instead of execve. */
int kbox_workload_prepare(const struct kbox_spec *spec, const char *home, struct kbox_strv *env, kbox_error_t *err);
/* Never returns. On failure writes {exit_code, errno} to errfd and exits. */
__attribute__((noreturn)) void kbox_workload_exec(const struct kbox_spec *spec, const char *home, int errfd);

#endif
