/* What `kbox entrypoint` reports about its nested sandbox (log line, KBOX_STATUS_FILE, the
   connection info sent to EG): the probe's verdict corrected with what the sandbox really
   achieved, i.e. the fallbacks pid 1 took and the mechanism that enforces the limits. */
#ifndef KBOX_REMOTE_PODSTATUS_H
#define KBOX_REMOTE_PODSTATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "remote/protections.h"
#include "sandbox/achieved.h"
#include "util/error.h"

struct kbox_sandbox;
struct kbox_cgroup;

struct kbox_pod_status {
  struct kbox_protections prot;               /* ok, partial (weakened by a fallback) or missing */
  struct kbox_achieved achieved;              /* every fallback taken, reported as "fallbacks" */
};

/* The spec's fallback mask for a KBOX_REQUIRE mask: a required protection allows no fallback that
   would weaken it (utsns: the hostname step, pidns: the /proc step). */
uint32_t kbox_pod_status_fallbacks(uint32_t required);
/* Correct the verdict with the started sandbox: its fallbacks and its limits' mechanism. */
void kbox_pod_status_apply(struct kbox_pod_status *st, const struct kbox_achieved *achieved,
                           const struct kbox_cgroup *cg);
/* Fail naming each required protection that ended up missing or partial. */
int kbox_pod_status_check(const struct kbox_pod_status *st, uint32_t required, kbox_error_t *err);
/* True when every protection is active and none partial. */
bool kbox_pod_status_complete(const struct kbox_pod_status *st);
/* "protections active: a,b; partial: c (why); missing: d (why)" */
void kbox_pod_status_summary(const struct kbox_pod_status *st, char *buf, size_t n);
/* {"active": [...], "partial": {name: why}, "missing": {name: why}, "fallbacks": {step: why}} */
json_t *kbox_pod_status_json(const struct kbox_pod_status *st);
/* Write {"protections": <json>} plus the keys of `extra` (may be NULL) to path, 0644, atomically. */
int kbox_pod_status_write(const struct kbox_pod_status *st, json_t *extra, const char *path, kbox_error_t *err);

#endif
