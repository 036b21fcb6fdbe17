/* Capabilities, securebits and no_new_privs for the workload. */
#ifndef KBOX_CAPS_H
#define KBOX_CAPS_H

#include <stdbool.h>
#include <stdint.h>
#include "util/error.h"

/* Before changing uid: drop every capability not in `keep` from the bounding set, clear ambient
   and inheritable, lock securebits so uid 0 grants nothing. `keep` is a bitmask of CAP_* numbers. */
int kbox_caps_drop_bounding(uint64_t keep, kbox_error_t *err);
/* After changing uid: set permitted/effective to `keep` only, and set no_new_privs. */
int kbox_caps_finish(uint64_t keep, kbox_error_t *err);

/* Whether this process holds capability `cap` (a CAP_* number) in its effective set. */
bool kbox_caps_effective(int cap);

#endif
