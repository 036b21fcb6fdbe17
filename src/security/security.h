/* Least privilege for `kbox run`: resolve --profile, apply its default limits, compile its seccomp
   filter once (host side), and install it as the workload's last step before execve. */
#ifndef KBOX_SECURITY_H
#define KBOX_SECURITY_H

#include "spec/spec.h"
#include "security/profile.h"
#include "security/seccomp.h"

/* A loaded profile and its compiled filter. Kept in a process-wide list so that a profile is read
   and compiled once per process however many sandboxes use it; specs only borrow them. */
struct kbox_security {
  char *path;
  struct kbox_profile *profile;
  struct kbox_seccomp_compiled filter;
  struct kbox_security *next;
};

/* Find the file of a profile given as NAME (installed data dir, or the source tree when running
   from a build tree) or PATH (contains '/' or ends in .json). *out is malloc'ed. */
int kbox_profile_find(const char *name_or_path, char **out, kbox_error_t *err);
/* Load sec->profile (or reuse it when already loaded) and point sec->loaded at it with its compiled
   filter. Prints the warning for --seccomp=unconfined. */
int kbox_security_prepare(struct kbox_spec_sec *sec, kbox_error_t *err);
/* The loaded profile's limits for those not given on the command line (not *_set). */
void kbox_security_fill_limits(const struct kbox_spec_sec *sec, struct kbox_spec_limits *lim);
/* The loaded profile's network rules and audit log, unless --net / --audit were given. */
void kbox_security_fill_net(const struct kbox_spec_sec *sec, struct kbox_spec_sandbox *sb, char **audit_path);
/* In the workload, after capabilities are dropped and no_new_privs is set: install the filter. */
int kbox_security_apply(const struct kbox_spec_sec *sec, kbox_error_t *err);

#endif
