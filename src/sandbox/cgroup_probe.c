#include "sandbox/cgroup_probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include "util/fs.h"

enum kbox_cgroup_mode kbox_cgroup_mode(void) {
  struct statfs fs;
  if (statfs("/sys/fs/cgroup", &fs) < 0) return KBOX_CGROUP_NONE;
  if (fs.f_type == CGROUP2_SUPER_MAGIC) return KBOX_CGROUP_V2;
  if (fs.f_type != TMPFS_MAGIC) return KBOX_CGROUP_NONE;
  if (statfs("/sys/fs/cgroup/unified", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return KBOX_CGROUP_HYBRID;
  return KBOX_CGROUP_V1;
}

const char *kbox_cgroup_mode_name(enum kbox_cgroup_mode mode) {
  static const char *const names[] = {"none", "v1", "hybrid", "v2"};
  return names[mode];
}

/* Is controller NAME usable: in cgroup.controllers (v2) or mounted as a v1 hierarchy. */
static bool has_controller(enum kbox_cgroup_mode mode, const char *name) {
  char path[128];
  if (mode == KBOX_CGROUP_V2) {
    char *text = NULL;
    kbox_error_t err = NULL;
    if (kbox_read_file("/sys/fs/cgroup/cgroup.controllers", 4096, &text, NULL, &err) < 0) {
      kbox_error_free(&err);
      return false;
    }
    bool found = false;
    for (char *save = NULL, *t = strtok_r(text, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
      found |= strcmp(t, name) == 0;
    free(text);
    return found;
  }
  snprintf(path, sizeof(path), "/sys/fs/cgroup/%s", name);
  return access(path, F_OK) == 0;
}

bool kbox_cgroup_probe_summary(char *buf, size_t n) {
  enum kbox_cgroup_mode mode = kbox_cgroup_mode();
  static const char *const ctl[] = {"memory", "pids", "cpu"};
  bool all = mode != KBOX_CGROUP_NONE;
  int off = snprintf(buf, n, "mode %s; controllers:", kbox_cgroup_mode_name(mode));
  for (size_t i = 0; i < 3; i++) {
    bool ok = mode != KBOX_CGROUP_NONE && has_controller(mode == KBOX_CGROUP_HYBRID ? KBOX_CGROUP_V1 : mode, ctl[i]);
    all &= ok;
    off += snprintf(buf + off, n > (size_t)off ? n - (size_t)off : 0, " %s%s", ctl[i], ok ? "" : "(missing)");
  }
  if (!all && (size_t)off < n)
    snprintf(buf + off, n - (size_t)off, "; limits fall back to rlimits");
  return all;
}
