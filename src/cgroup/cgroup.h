/* Sandbox cgroups: where they go (layout), which mechanism enforces each limit (cgroup v2, v1 or
   rlimits), creating and filling them, the verdict counters, and removal (also after a SIGKILL). */
#ifndef KBOX_CGROUP_H
#define KBOX_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

/* The controllers kbox uses. */
enum kbox_ctl { KBOX_CTL_MEMORY, KBOX_CTL_PIDS, KBOX_CTL_CPU, KBOX_CTL_N };
/* The limits kbox reports on (swap rides on the memory controller). */
enum kbox_lim { KBOX_LIM_MEMORY, KBOX_LIM_SWAP, KBOX_LIM_PIDS, KBOX_LIM_CPU, KBOX_LIM_N };
enum kbox_mech { KBOX_MECH_NONE, KBOX_MECH_CGROUP2, KBOX_MECH_CGROUP1, KBOX_MECH_RLIMIT };

/* Where the cgroup hierarchies are mounted and where kbox itself sits in each. Paths of the
   mounts are absolute on this machine (or in a fake tree, for tests). */
struct kbox_cgroup_layout {
  char *v2_mount;              /* cgroup2 mount point, NULL if none */
  char *v2_self;               /* kbox's cgroup inside it, "/..." */
  char *v1_mount[KBOX_CTL_N];  /* v1 hierarchy holding that controller, NULL if none */
  char *v1_self[KBOX_CTL_N];
};

struct kbox_cgroup_limits {
  uint64_t memory;  /* bytes */
  uint64_t swap;    /* bytes on top of memory */
  uint64_t pids;
  double cpus;
};

/* What the controllers said once the sandbox ended (unknown values stay false / -1). */
struct kbox_cgroup_stats {
  bool collected;
  int64_t memory_peak;     /* bytes, -1 unknown */
  int64_t oom_kills;       /* -1 unknown */
  int64_t pids_max_hits;   /* forks refused by pids.max, -1 unknown */
  double cpu_seconds;      /* -1 unknown */
};

struct kbox_cgroup {
  char *name;                      /* kbox.<pid>.<id> */
  char *v2_dir;                    /* sandbox cgroup in cgroup2 (limits or only tracking), or NULL */
  int v2_fd;                       /* O_PATH fd of v2_dir for CLONE_INTO_CGROUP, -1 */
  char *v2_parent;                 /* a tracking v2_dir made late (kbox_cgroup_create_late) is made in this, or NULL */
  char *v1_dir[KBOX_CTL_N];        /* sandbox cgroup per v1 controller, or NULL (may repeat) */
  char *v1_parent[KBOX_CTL_N];     /* the directory each v1_dir is made in */
  enum kbox_mech mech[KBOX_LIM_N];
  char *why_not[KBOX_LIM_N];       /* why a limit has no cgroup mechanism */
  struct kbox_cgroup_limits lim;
  struct kbox_cgroup_stats stats;
  int reaper_fd;                   /* write end of the reaper's pipe, -1 */
  char *parent_override;           /* --cgroup-parent, NULL when none (an explicit parent is never fallen back from) */
  pid_t reaper_parent;             /* the reaper's short-lived parent, reaped in destroy, or 0 */
  char *v1_prime;                  /* kbox's own cgroup.procs in a v1 hierarchy the sandbox uses, or NULL */
  bool adopt_existing;             /* late creation takes directories that exist already (a warm pool
                                      kernel's, renamed to these names: src/warm/pool_cgroup.c) */
};

/* ---- layout (layout.c) ---- */
/* Parse /proc/self/cgroup and /proc/self/mountinfo texts. */
int kbox_cgroup_layout_parse(struct kbox_cgroup_layout *l, const char *self_cgroup, const char *mountinfo,
                             kbox_error_t *err);
/* The layout of this process on this machine. */
int kbox_cgroup_layout_read(struct kbox_cgroup_layout *l, kbox_error_t *err);
void kbox_cgroup_layout_free(struct kbox_cgroup_layout *l);
/* The layout of process PID (its /proc/PID/cgroup against our mountinfo). */
int kbox_cgroup_layout_read_pid(struct kbox_cgroup_layout *l, pid_t pid, kbox_error_t *err);
/* "v2", "hybrid" (v1 controllers beside a cgroup2 mount), "v1" or "none". */
const char *kbox_cgroup_layout_mode(const struct kbox_cgroup_layout *l);
/* Memory in use by the cgroup of process PID (v1 memory.usage_in_bytes, else v2 memory.current),
   -1 when unknown. */
long long kbox_cgroup_pid_memory(pid_t pid);
/* Directory in which sandbox cgroups of a hierarchy go: MOUNT + (parent_override or SELF). */
char *kbox_cgroup_parent_dir(const char *mount, const char *self, const char *parent_override);

/* ---- v2 files (cgroup_v2.c) ---- */
/* Which of memory/pids/cpu are listed in DIR/cgroup.controllers (bitmask of 1<<kbox_ctl). */
unsigned kbox_cgroup_v2_available(const char *dir);
/* Make the controllers in MASK available to children of PARENT via cgroup.subtree_control; a
   failure explains the cause (no-internal-processes rule, missing delegation) and the fix. */
int kbox_cgroup_v2_enable(const char *parent, unsigned mask, kbox_error_t *err);
/* Write the limits of the controllers in MASK into DIR (and memory.oom.group); sets mech. */
int kbox_cgroup_v2_apply(const char *dir, unsigned mask, const struct kbox_cgroup_limits *lim,
                         enum kbox_mech mech[KBOX_LIM_N], kbox_error_t *err);
/* Read memory.peak, memory.events, pids.events and cpu.stat of DIR into stats. */
void kbox_cgroup_v2_stats(const char *dir, struct kbox_cgroup_stats *stats);

/* ---- v1 files (cgroup_v1.c) ---- */
/* Write the limit of controller CTL into its v1 directory DIR; sets mech. */
int kbox_cgroup_v1_apply(const char *dir, enum kbox_ctl ctl, const struct kbox_cgroup_limits *lim,
                         enum kbox_mech mech[KBOX_LIM_N], kbox_error_t *err);
void kbox_cgroup_v1_stats(const char *dir, enum kbox_ctl ctl, struct kbox_cgroup_stats *stats);
/* Path of kbox's own cgroup.procs in the first v1 hierarchy the sandbox uses (NULL when none).
   Writing "0" there moves the writer to the cgroup it is already in: a no-op that starts the
   RCU grace period every v1 move waits for (cgroup_threadgroup_rwsem), so the real move of the
   sandbox's pid 1 a few milliseconds later waits only for what is left of it (the reaper does it). */
char *kbox_cgroup_v1_prime_path(const struct kbox_cgroup_layout *l, const struct kbox_cgroup *cg);

/* ---- the sandbox cgroup (cgroup.c) ---- */
/* Create the sandbox cgroup(s) under kbox's own cgroup (or parent_override) for sandbox ID and
   apply the limits. Limits no cgroup can carry fall back to rlimits (see rlimits.c) with one
   warning; with require_limits, or an explicit parent_override, that is an error instead. */
int kbox_cgroup_create(const struct kbox_cgroup_layout *layout, const char *parent_override, const char *id,
                       const struct kbox_cgroup_limits *lim, bool require_limits, struct kbox_cgroup **out,
                       kbox_error_t *err);
/* The same in two halves, so that the v1 half runs while the sandbox's pid 1 mounts: early, the
   cgroup v2 part when it carries limits (the sandbox is born in it) and the other directories'
   names; late (before kbox_cgroup_attach), the v1 directories and their limits and a v2 tracking
   cgroup, then the fallback as above (on failure the caller destroys cg). */
struct kbox_cgroup *kbox_cgroup_create_early(const struct kbox_cgroup_layout *layout, const char *parent_override,
                                            const char *id, const struct kbox_cgroup_limits *lim);
int kbox_cgroup_create_late(struct kbox_cgroup *cg, bool require_limits, kbox_error_t *err);
/* Put PID into the v1 cgroups (and v2, when clone3 could not place it there at birth). */
int kbox_cgroup_attach(struct kbox_cgroup *cg, pid_t pid, bool v2_too, kbox_error_t *err);
/* Read the verdict counters (call once the sandbox has ended, before destroy). */
void kbox_cgroup_collect(struct kbox_cgroup *cg);
/* Kill whatever is left, remove the directories and free cg. NULL is fine. */
void kbox_cgroup_destroy(struct kbox_cgroup *cg);
/* Free cg and leave its directories to the reaper, which removes them once kbox has exited and the
   last task has left them (for a sandbox whose workload ended and whose pid 1 is exiting: kbox
   need not wait for its namespaces' teardown). NULL is fine. */
void kbox_cgroup_hand_off(struct kbox_cgroup *cg);
/* Kill every process in DIR and rmdir it, retrying while processes exit (async-signal-safe). */
int kbox_cgroup_remove_dir(const char *dir);
/* Remove leftover kbox.<pid>.* cgroups in DIR whose kbox process is gone. Returns the count. */
int kbox_cgroup_sweep_stale(const char *dir);
const char *kbox_mech_name(enum kbox_mech m);
const char *kbox_lim_name(enum kbox_lim l);

/* ---- reaper (reaper.c) ---- */
/* Tell the reaper about DIR before creating it (starting the reaper on first use: a small process,
   outside the sandbox cgroup and session, that removes the directories it was told of once kbox
   is gone, by normal exit or SIGKILL). */
int kbox_cgroup_reaper_watch(struct kbox_cgroup *cg, const char *dir, kbox_error_t *err);
/* Tell the reaper that its directories are gone (kbox removed them): it must not touch them again. */
void kbox_cgroup_reaper_forget(struct kbox_cgroup *cg);
/* Start the reaper now if it is not running (it primes the v1 move as it starts). */
int kbox_cgroup_reaper_start(struct kbox_cgroup *cg, kbox_error_t *err);

/* ---- rlimit fallback (rlimits.c) ---- */
/* Remember which limits the workload must enforce itself with rlimits: the values (call before
   clone3, the sandbox gets a copy), then which of them apply (once the cgroups are made). The
   sandbox's pid 1 learns the latter from kbox_rlimits_plan_bits, sent in the JOINED message. */
void kbox_rlimits_plan_values(const struct kbox_cgroup *cg);
void kbox_rlimits_plan(const struct kbox_cgroup *cg);
unsigned kbox_rlimits_plan_bits(void);
void kbox_rlimits_plan_set_bits(unsigned bits);
/* In the workload before execve: RLIMIT_AS for memory, RLIMIT_NPROC for pids, as planned. */
int kbox_rlimits_apply(kbox_error_t *err);
/* For a zygote (src/warm): memory as a soft RLIMIT_AS only, its hard limit left as inherited, and
   no RLIMIT_NPROC, so that each kernel forked from it can set its own (a hard limit cannot be
   raised again, and a nested user namespace's processes count against its creator's NPROC). */
void kbox_rlimits_soft_only(void);

#endif
