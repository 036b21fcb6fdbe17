#include "sandbox/caps.h"

#include <errno.h>
#include <stddef.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>

static void free_caps(cap_t *c) { if (*c) cap_free(*c); }

int kbox_caps_drop_bounding(uint64_t keep, kbox_error_t *err) {
  for (int c = 0; c < 64; c++) {
    if (keep & (1ULL << c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0) continue;
    if (errno == EINVAL) break; /* past the last capability this kernel knows */
    return kbox_error_make(err, errno, "dropping capability %d from the bounding set", c);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    return kbox_error_make(err, errno, "clearing ambient capabilities");
  unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                  SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
    return kbox_error_make(err, errno, "locking securebits");
  return 0;
}

int kbox_caps_finish(uint64_t keep, kbox_error_t *err) {
  __attribute__((cleanup(free_caps))) cap_t caps = cap_init();
  if (caps == NULL) return kbox_error_make(err, errno, "cap_init");
  for (cap_value_t c = 0; c < 64 && c <= CAP_LAST_CAP; c++) {
    if (!(keep & (1ULL << c))) continue;
    cap_set_flag(caps, CAP_PERMITTED, 1, &c, CAP_SET);
    cap_set_flag(caps, CAP_EFFECTIVE, 1, &c, CAP_SET);
  }
  if (cap_set_proc(caps) < 0) return kbox_error_make(err, errno, "setting capabilities");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return kbox_error_make(err, errno, "setting no_new_privs");
  return 0;
}

bool kbox_caps_effective(int cap) {
  __attribute__((cleanup(free_caps))) cap_t caps = cap_get_proc();
  cap_flag_value_t v = CAP_CLEAR;
  return caps != NULL && cap_get_flag(caps, (cap_value_t)cap, CAP_EFFECTIVE, &v) == 0 && v == CAP_SET;
}
