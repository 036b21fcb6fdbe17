/* The warm pool (docs/warm.md, "The pool"): kernels forked from the zygote and started ahead, each
   held by a `kbox run` holder process until a kbox run whose settings match claims it. Three parts:
   the claim (pool.c, in the claiming kbox), the holder (pool_hold.c) and the filler that keeps the
   pool at its size and memory budget (pool_fill.c, in `kbox warm serve`). */
#ifndef KBOX_WARM_POOL_H
#define KBOX_WARM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/sandbox.h"
#include "spec/spec.h"
#include "util/error.h"

/* Set by the filler in a holder's environment: the path of the holder's slot socket. */
#define KBOX_WARM_POOL_SLOT_ENV "KBOX_WARM_POOL_SLOT"
/* In a pool kernel's environment until it is claimed (zygote.py waits for the claim then). */
#define KBOX_WARM_POOL_KERNEL_ENV "KBOX_WARM_POOL_KERNEL"
/* The socket a pool kernel listens on for its claim, in its run dir (the kernel's /run/kbox). */
#define KBOX_WARM_CLAIM_SOCK "claim.sock"
/* Where a kernel's run dir appears inside its sandbox (kernel/launch.h: KBOX_KERNEL_INNER_DIR). */
#define KBOX_WARM_RUN_INNER "/run/kbox"
#define KBOX_WARM_POOL_MAX 64
#define KBOX_WARM_POOL_MAGIC 0x6b627031u /* "kbp1" */

/* The cgroup directories of a pool kernel in an offer: cgroup v2, then v1 memory, pids, cpu. */
enum { KBOX_POOL_CG_V2 = 0, KBOX_POOL_CG_V1 = 1, KBOX_POOL_CG_N = 4 };

/* The messages between a claimer and a holder on the slot socket (SOCK_SEQPACKET). */
enum { KBOX_POOL_CLAIM = 1, KBOX_POOL_OFFER, KBOX_POOL_DONE, KBOX_POOL_FAIL };
struct kbox_pool_msg {
  uint32_t magic;
  uint32_t type;
  int32_t ok;           /* OFFER: 1 with the pidfd and channel of pid 1, 0 when the settings differ;
                           DONE: 1 when the claimer took the kernel's cgroups (the holder must not
                           remove them) */
  int32_t workload_pid; /* OFFER: the kernel's pid inside its sandbox */
  char kdir[512];       /* OFFER: the kernel's run dir on the host (claimed by renaming it) */
  char cgroups[KBOX_POOL_CG_N][512]; /* OFFER: the kernel's cgroup directories ("" when none) */
};

/* The key of a pool kernel: spec encoded as a warm request without the settings a claim applies
   (id, hostname, workdir, binds, env, verbosity; limits are not in a request). */
int kbox_warm_pool_norm(const struct kbox_spec *spec, char **out, size_t *len, kbox_error_t *err);
/* BASE/KEY.pool: the slots of keydir's pool (made 0700 when mk). */
int kbox_warm_pool_dir(const char *keydir, char *out, size_t n, bool mk, kbox_error_t *err);
/* Mark the pool of dir as wanted now (a claim came, or its size was set): BASE/KEY.pool/wanted's
   time, which the filler's idle drain counts from. */
void kbox_warm_pool_touch(const char *dir);
/* Create or replace the small file PATH with text (mode 0600, not following a link). */
int kbox_warm_pool_put(const char *path, const char *text, kbox_error_t *err);
/* The host path of spec's run dir (its bind at KBOX_WARM_RUN_INNER), or NULL. */
const char *kbox_warm_pool_kdir(const struct kbox_spec *spec);

/* Take a ready pool kernel for spec into sb (as a fork would fill it). 1: claimed; 0: not (one log
   line says why when a pool exists; the caller forks instead). Never fails otherwise. */
int kbox_warm_pool_claim(struct kbox_sandbox *sb, struct kbox_spec *spec, const char *keydir);

/* A child that joins pid1's user, mount and uts namespaces and gives the kernel spec's hostname,
   workdir and binds, started (while the claimer does the rest) and then waited for (pool_enter.c). */
struct kbox_pool_entry {
  pid_t pid;
  int fd; /* read end of its error pipe */
};
int kbox_warm_pool_enter_start(pid_t pid1, const struct kbox_spec *spec, struct kbox_pool_entry *e, kbox_error_t *err);
int kbox_warm_pool_enter_finish(struct kbox_pool_entry *e, kbox_error_t *err);
/* Move pid1 and everything below it into cg (when its own cgroups could not be taken). */
struct kbox_cgroup;
int kbox_warm_pool_move(pid_t pid1, struct kbox_cgroup *cg, kbox_error_t *err);

/* Make the offered kernel's cgroups cg's: each v1 directory renamed to cg's name (same parent:
   no migration, and what the kernel charged so far is charged here), the v2 one (which cannot be
   renamed) taken as it is, then cg->adopt_existing set so that kbox_limits_finish writes the
   requested limits into them. 0 with *taken false when they cannot be taken so (another parent,
   a v2 cgroup with limits, the kernel already over a requested limit: *why says which; the
   claimer moves the kernel instead); -1 when a rename failed half-way (the kernel is given up).
   (pool_cgroup.c) */
/* kbox_limits_setup for a claim: the same names and reaper, without the v1 move's priming when
   the offered cgroups can be taken. */
int kbox_warm_pool_plan_cgroups(const struct kbox_spec *spec, struct kbox_cgroup **out, const struct kbox_pool_msg *offer,
                                kbox_error_t *err);
int kbox_warm_pool_take_cgroups(struct kbox_cgroup *cg, const struct kbox_pool_msg *offer, bool *taken, const char **why,
                                kbox_error_t *err);
/* The holder's side after such a claim: forget its cgroups without removing them. */
void kbox_warm_pool_release_cgroups(struct kbox_cgroup *cg);

/* This kbox run is a pool holder (started by the filler). */
bool kbox_warm_pool_holder(void);
/* The holder: wait until sb's kernel is ready, offer it on the slot socket and hand it to the first
   claimer whose settings match. Returns 0 once handed over (sb no longer names the kernel: destroy
   leaves it running), 1 when it ended unclaimed (SIGTERM, the kernel died; destroy kills it). */
int kbox_warm_pool_hold(struct kbox_sandbox *sb, const struct kbox_spec *spec, int sigfd);

/* The filler, in `kbox warm serve`. */
struct kbox_warm_pool {
  const struct kbox_spec *spec; /* the zygote's layers, for the holders' kbox run */
  char keydir[3800];
  char dir[3900];               /* BASE/KEY.pool */
  pid_t holders[KBOX_WARM_POOL_MAX];
  char ids[KBOX_WARM_POOL_MAX][32]; /* their sandbox ids: slot ID.sock, ID.mem */
  bool ending[KBOX_WARM_POOL_MAX];  /* sent SIGTERM (the pool shrank), not reaped yet */
  int n;
  pid_t starting;               /* the holder being made (one at a time), 0 when none */
  long long idle_ms;            /* the pool drains after KBOX_WARM_IDLE without a claim */
};
void kbox_warm_pool_init(struct kbox_warm_pool *p, const struct kbox_spec *spec, const char *keydir);
/* Reap holders, refill up to the size and budget; returns the poll timeout until the next tick (ms). */
int kbox_warm_pool_tick(struct kbox_warm_pool *p);
/* End every holder (and so its kernel) and remove the pool directory. */
void kbox_warm_pool_stop(struct kbox_warm_pool *p);
/* Ready slots in keydir's pool, and its wanted size (for status). */
void kbox_warm_pool_count(const char *keydir, int *ready, int *size);

/* In libkbox-warm.so, called by a pool kernel (zygote.py) with the claim's request: the
   environment (NUL-separated K=V, ending with an empty string) and cwd a fork would have got.
   1 when the cwd is a workdir (the kernel changes to it once the claimer says it is mounted), 0
   when not, -1 when the request is unreadable. */
int kbox_warm_claim_env(const char *req, size_t len, char *envbuf, size_t envcap, char *cwd, size_t cwdcap);

#endif
