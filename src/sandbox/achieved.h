/* What a sandbox really got: the set-up steps the host refused and the fallback taken for each.
   pid 1 fills it while it builds the sandbox and sends it to kbox over the channel before the
   workload starts, so what kbox reports is what was achieved, not what a probe expected. */
#ifndef KBOX_ACHIEVED_H
#define KBOX_ACHIEVED_H

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

/* Set-up steps that have a fallback (a bit each in kbox_spec.fallbacks and kbox_achieved.degraded). */
enum kbox_step {
  KBOX_STEP_HOSTNAME, /* sethostname in the uts namespace; fallback: keep the inherited name */
  KBOX_STEP_PROC,     /* a fresh /proc; fallback: read-only rbind of the outer /proc, with the masks */
  KBOX_STEP_SYSFS,    /* a fresh read-only /sys; fallback: none mounted (an empty directory) */
  KBOX_STEP_IDMAP,    /* idmapped rootfs layers (root mode); fallback: plain copies (files owned by nobody) */
  KBOX_STEP_N
};

#define KBOX_STEP_WHY 200

struct kbox_achieved {
  uint32_t degraded;                 /* 1 << step for each fallback taken */
  char why[KBOX_STEP_N][KBOX_STEP_WHY]; /* the refusal and the fallback, for each taken */
};

extern const char *const kbox_step_names[KBOX_STEP_N];

/* Record that STEP fell back; WHY says what was refused and what was done instead. */
void kbox_achieved_note(struct kbox_achieved *a, enum kbox_step step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline bool kbox_achieved_degraded(const struct kbox_achieved *a, enum kbox_step step) {
  return (a->degraded & (1u << step)) != 0;
}
/* Channel encoding: the reasons of the degraded steps, one per line in step order. */
void kbox_achieved_encode(const struct kbox_achieved *a, char *text, size_t n);
void kbox_achieved_decode(struct kbox_achieved *a, uint32_t degraded, const char *text);

#endif
