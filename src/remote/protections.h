/* Which protections the pod permits the nested sandbox (namespaces, cgroup limits, seccomp,
   capability drop), so `kbox entrypoint` can run with what works and say what is missing. */
#ifndef KBOX_REMOTE_PROTECTIONS_H
#define KBOX_REMOTE_PROTECTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/error.h"

enum kbox_prot {
  KBOX_PROT_USERNS, KBOX_PROT_PIDNS, KBOX_PROT_MOUNTNS, KBOX_PROT_NETNS, KBOX_PROT_IPCNS,
  KBOX_PROT_UTSNS, KBOX_PROT_CGROUPNS, KBOX_PROT_CGROUP, KBOX_PROT_SECCOMP, KBOX_PROT_CAPS,
  KBOX_PROT_COUNT
};

struct kbox_protections {
  bool active[KBOX_PROT_COUNT];
  char why[KBOX_PROT_COUNT][96]; /* reason when missing */
};

extern const char *const kbox_prot_names[KBOX_PROT_COUNT];

/* Try each protection in a short-lived child process and record what works. */
void kbox_protections_probe(struct kbox_protections *p);
/* Correct one entry after the fact (e.g. cgroup limits once the sandbox exists). */
void kbox_protections_set(struct kbox_protections *p, enum kbox_prot which, bool active, const char *why);
/* clone3 namespace flags for the active namespaces. */
uint64_t kbox_protections_ns_flags(const struct kbox_protections *p);
/* Parse KBOX_REQUIRE ("userns,seccomp", "all", "" ...) into a bitmask of enum kbox_prot. */
int kbox_protections_parse_require(const char *list, uint32_t *mask, kbox_error_t *err);
/* Fail naming every required protection that is missing, with its reason. */
int kbox_protections_check(const struct kbox_protections *p, uint32_t required, kbox_error_t *err);
/* "active: userns,pidns,...; missing: cgroup (why), ..." */
void kbox_protections_summary(const struct kbox_protections *p, char *buf, size_t n);
/* {"active": [...], "missing": {"name": "why"}} */
json_t *kbox_protections_json(const struct kbox_protections *p);
/* Write the JSON (plus extra keys from `extra`, may be NULL) to path, mode 0644, atomically. */
int kbox_protections_write_status(const struct kbox_protections *p, json_t *extra, const char *path, kbox_error_t *err);

#endif
