/* Which protections the pod permits the nested sandbox, from the host probe (sandbox/probe.h,
   the same probe as `kbox doctor`), so `kbox entrypoint` can run with what works, say what is
   partial or missing, enforce KBOX_REQUIRE and write the status file. */
#ifndef KBOX_REMOTE_PROTECTIONS_H
#define KBOX_REMOTE_PROTECTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sandbox/probe.h"
#include "util/error.h"

/* One protection per probe feature below KBOX_FEAT_PROTECTIONS (same numbers). */
enum kbox_prot {
  KBOX_PROT_USERNS = KBOX_FEAT_USERNS, KBOX_PROT_PIDNS = KBOX_FEAT_PIDNS, KBOX_PROT_MOUNTNS = KBOX_FEAT_MOUNTNS,
  KBOX_PROT_NETNS = KBOX_FEAT_NETNS, KBOX_PROT_IPCNS = KBOX_FEAT_IPCNS, KBOX_PROT_UTSNS = KBOX_FEAT_UTSNS,
  KBOX_PROT_CGROUPNS = KBOX_FEAT_CGROUPNS, KBOX_PROT_CGROUP = KBOX_FEAT_CGROUP, KBOX_PROT_SECCOMP = KBOX_FEAT_SECCOMP,
  KBOX_PROT_CAPS = KBOX_FEAT_CAPS, KBOX_PROT_HOSTNAME = KBOX_FEAT_HOSTNAME, KBOX_PROT_LOOPBACK = KBOX_FEAT_LOOPBACK,
  KBOX_PROT_OVERLAY = KBOX_FEAT_OVERLAY, KBOX_PROT_PROC = KBOX_FEAT_PROC, KBOX_PROT_IDMAP = KBOX_FEAT_IDMAP,
  KBOX_PROT_COUNT = KBOX_FEAT_PROTECTIONS
};

struct kbox_protections {
  struct kbox_probe probe; /* verdicts; only the first KBOX_PROT_COUNT are protections */
};

/* Probe each protection for the sandbox spec describes (as kbox run builds it). */
void kbox_protections_probe(struct kbox_protections *p, const struct kbox_spec *spec);
/* Correct one entry after the fact (e.g. cgroup limits once the sandbox exists): ok or missing. */
void kbox_protections_set(struct kbox_protections *p, enum kbox_prot which, bool active, const char *why);
/* Same with any state: a fallback that stands in for a refused step is KBOX_VERDICT_PARTIAL, with
   `why` saying what failed and what is used instead. */
void kbox_protections_set_state(struct kbox_protections *p, enum kbox_prot which, enum kbox_verdict_state s, const char *why);
/* True when the protection is fully there (ok). */
bool kbox_protections_active(const struct kbox_protections *p, enum kbox_prot which);
/* The protection's key ("userns", ...). */
const char *kbox_prot_name(enum kbox_prot which);
/* clone3 namespace flags for the namespaces that are not missing. */
uint64_t kbox_protections_ns_flags(const struct kbox_protections *p);
/* Parse KBOX_REQUIRE ("userns,seccomp", "all", "" ...) into a bitmask of enum kbox_prot. */
int kbox_protections_parse_require(const char *list, uint32_t *mask, kbox_error_t *err);
/* Fail naming every required protection that is partial or missing, with its reason. */
int kbox_protections_check(const struct kbox_protections *p, uint32_t required, kbox_error_t *err);
/* "protections active: userns,pidns,...; partial: proc (why); missing: cgroup (why), ..." */
void kbox_protections_summary(const struct kbox_protections *p, char *buf, size_t n);
/* {"active": [...], "partial": {"name": "why"}, "missing": {"name": "why"}} */
json_t *kbox_protections_json(const struct kbox_protections *p);
/* Write the JSON (plus extra keys from `extra`, may be NULL) to path, mode 0644, atomically. */
/* Write {"protections": PROTECTIONS (taken over)} plus the keys of extra to path, 0644, atomically. */
int kbox_protections_write_json(json_t *protections, json_t *extra, const char *path, kbox_error_t *err);
int kbox_protections_write_status(const struct kbox_protections *p, json_t *extra, const char *path, kbox_error_t *err);

#endif
