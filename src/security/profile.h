/* Security profiles: a JSON file with a seccomp section (OCI seccomp schema), capabilities to keep
   and default limits. Loading validates everything; any unknown key or value is an error. */
#ifndef KBOX_PROFILE_H
#define KBOX_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/strv.h"

#define KBOX_SC_MAX_ARCHES 16
#define KBOX_SC_MAX_ARGS 6

/* One argument condition of a rule (all conditions of a rule must hold). */
struct kbox_sc_arg {
  unsigned index;     /* 0..5 */
  uint64_t value;     /* datum, or the mask for SCMP_CMP_MASKED_EQ */
  uint64_t value_two; /* datum for SCMP_CMP_MASKED_EQ */
  int op;             /* enum scmp_compare */
};

/* One entry of seccomp.syscalls: the same action for every name, under the same conditions. */
struct kbox_sc_rule {
  char **names;
  size_t n_names;
  uint32_t action; /* libseccomp action value (SCMP_ACT_*) */
  struct kbox_sc_arg args[KBOX_SC_MAX_ARGS];
  unsigned n_args;
};

struct kbox_sc_def {
  uint32_t default_action;
  uint32_t arches[KBOX_SC_MAX_ARCHES]; /* SCMP_ARCH_* tokens; the native one is always present */
  size_t n_arches;
  struct kbox_sc_rule *rules;
  size_t n_rules;
};

/* Default limits a profile may set; each applies only when the option was not given. */
struct kbox_profile_limits {
  bool memory_set, swap_set, disk_set, pids_set, cpus_set, nofile_set;
  uint64_t memory_bytes, swap_bytes, disk_bytes, pids, nofile;
  double cpus;
};

struct kbox_profile {
  char *path;
  char *description;
  uint64_t caps_keep; /* bitmask of CAP_* numbers */
  struct kbox_profile_limits limits;
  struct kbox_sc_def seccomp;
  struct kbox_strv net_allow; /* "net": {"allow": [RULE...]} (rules are checked when a run uses them) */
  uint64_t net_max_bytes;     /* "net": {"max_bytes": SIZE}, 0: not set */
  char *audit;                /* "audit": FILE */
  bool no_warm;               /* "warm": false: kernels never start from a zygote (docs/warm.md) */
};

/* Parse and validate PATH. Errors name the file, the JSON path (e.g. seccomp.syscalls[3].names[1])
   and the problem. On success *out is a new profile (free with kbox_profile_free). */
int kbox_profile_load(const char *path, struct kbox_profile **out, kbox_error_t *err);
/* Same from a JSON text; `label` stands for the file name in messages. */
int kbox_profile_parse(const char *label, const char *text, struct kbox_profile **out, kbox_error_t *err);
/* Same from the LEN bytes of the file at path, already read (they may hold NULs, as a file may). */
int kbox_profile_parse_bytes(const char *path, const char *text, size_t len, struct kbox_profile **out,
                             kbox_error_t *err);
void kbox_profile_free(struct kbox_profile *p);

#endif
