/* Throwaway children for the host probe (probe.c, cgroup_probe.c): cloned and given their id maps
   exactly like the sandbox's pid 1 (kbox_clone3, kbox_idmap_compute, kbox_idmap_write), they run
   set-up steps and report one result per step back to the parent. */
#ifndef KBOX_PROBE_CHILD_H
#define KBOX_PROBE_CHILD_H

#include <sys/types.h>

#include "sandbox/probe.h"

/* Steps that are aspects of a verdict the parent composes (reported with these codes). */
enum { KBOX_PROBE_ASPECT_BASE = KBOX_FEAT_COUNT, KBOX_PROBE_ASPECTS = 4 };

struct kbox_probe_job {
  uint64_t ns_flags;                                       /* clone3 namespace flags */
  int cgroup_fd;                                           /* CLONE_INTO_CGROUP target, or -1 */
  void (*child)(int chan, void *arg);                      /* in the child, after GO and the identity change */
  int (*cloned)(pid_t pid, void *arg, kbox_error_t *err);  /* in the parent before GO, or NULL */
  void *arg;
  struct kbox_verdict aspect[KBOX_PROBE_ASPECTS];          /* filled from the child's aspect reports */
  bool aspect_seen[KBOX_PROBE_ASPECTS];
};

/* Clone a child for job (as kbox_sandbox_start clones pid 1), store the verdicts it reports in p
   (may be NULL) and reap it. -1 with err when clone3, the id maps, the hook or the child's change
   of identity failed (then nothing ran). */
int kbox_probe_spawn(const struct kbox_spec *spec, struct kbox_probe_job *job, struct kbox_probe *p, kbox_error_t *err);
/* In the child: report the result of one step (a feature or KBOX_PROBE_ASPECT_BASE + i). */
void kbox_probe_report(int chan, int feature, enum kbox_verdict_state s, int errno_, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* In the child: report a step as ok (err NULL) or missing with err's message (freed). */
void kbox_probe_report_result(int chan, int feature, kbox_error_t *err, const char *ok_detail);

#endif
