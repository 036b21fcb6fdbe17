/* What this host allows the sandbox, found by doing each set-up step the way `kbox run` does it
   (the same functions, in throwaway child processes): the one host probe behind `kbox doctor`,
   `kbox entrypoint`'s protection list and its status file. */
#ifndef KBOX_PROBE_H
#define KBOX_PROBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "spec/spec.h"

/* ok: the step works as kbox run does it. partial: it works only in part, or a fallback stands in
   (the detail says what failed and what is used instead). missing: the step is refused.
   A set-up step with a fallback (keeping the uts namespace unnamed when sethostname is refused, a
   read-only rbind of /proc when a fresh one cannot be mounted) is probed by doing both, in the
   probe child, with the same functions init uses: the refused step's error plus the fallback's
   success make it partial, the fallback's failure too makes it missing. */
enum kbox_verdict_state { KBOX_VERDICT_OK, KBOX_VERDICT_PARTIAL, KBOX_VERDICT_MISSING };

/* The features first (up to KBOX_FEAT_PROTECTIONS) are protections of the sandbox, listed by the
   entrypoint; the rest are facts about the host that only doctor reports. */
enum kbox_feature {
  KBOX_FEAT_USERNS, KBOX_FEAT_PIDNS, KBOX_FEAT_MOUNTNS, KBOX_FEAT_NETNS, KBOX_FEAT_IPCNS, KBOX_FEAT_UTSNS,
  KBOX_FEAT_CGROUPNS, KBOX_FEAT_CGROUP, KBOX_FEAT_SECCOMP, KBOX_FEAT_CAPS, KBOX_FEAT_HOSTNAME,
  KBOX_FEAT_LOOPBACK, KBOX_FEAT_OVERLAY, KBOX_FEAT_PROC, KBOX_FEAT_IDMAP,
  KBOX_FEAT_PROTECTIONS,
  KBOX_FEAT_UNPRIV_USERNS = KBOX_FEAT_PROTECTIONS, KBOX_FEAT_CLONE3,
  KBOX_FEAT_COUNT
};

struct kbox_verdict {
  enum kbox_verdict_state state;
  int errno_;          /* errno of the refused step, 0 when none */
  char detail[384];    /* ok: what works; partial: what failed and what stands in; missing: the refused step */
  char disables[192];  /* partial/missing: what the sandbox loses ("" when ok) */
};

struct kbox_probe {
  struct kbox_verdict v[KBOX_FEAT_COUNT];
};

/* Short key ("userns", "overlay", ...) used in KBOX_REQUIRE, the status file and doctor's JSON. */
const char *kbox_feature_key(enum kbox_feature f);
/* Doctor's title ("user namespaces", "overlayfs in a user namespace", ...). */
const char *kbox_feature_title(enum kbox_feature f);
/* True when `kbox run` fails without the feature (false: it degrades). */
bool kbox_feature_required(enum kbox_feature f);
const char *kbox_verdict_state_name(enum kbox_verdict_state s);
/* Set a verdict; `disables` NULL takes the feature's default text (ignored when ok). */
void kbox_verdict_set(struct kbox_verdict *v, enum kbox_feature f, enum kbox_verdict_state s, int errno_,
                      const char *disables, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Probe every feature for sandboxes built from spec (its layers, profile, ids, workdir, cgroup
   parent and ns_flags; 0 means all namespaces). host_facts adds the doctor-only features. kbox must
   be single-threaded (clone3, like kbox_sandbox_start). */
void kbox_probe_run(struct kbox_probe *p, const struct kbox_spec *spec, bool host_facts);
/* After `kbox run` failed to set up the sandbox (exit 125): probe the same spec and add to err a
   hint naming the required steps this host refuses, in doctor's words (nothing when none is). */
void kbox_probe_explain_failure(const struct kbox_spec *spec, kbox_error_t *err);
/* clone3 namespace flags of the namespaces that are not missing. */
uint64_t kbox_probe_ns_flags(const struct kbox_probe *p);
/* {"key", "name", "state", "ok", "required", "detail", "disables"} */
json_t *kbox_verdict_json(const struct kbox_probe *p, enum kbox_feature f);

#endif
