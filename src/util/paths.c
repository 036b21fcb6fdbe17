#include "util/paths.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Is path strictly below dir (a whole path component, not a name prefix)? */
static bool below(const char *path, const char *dir) {
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/') len--;
  return len > 0 && strncmp(path, dir, len) == 0 && path[len] == '/';
}

bool kbox_is_dev_binary(const char *exe, const char *source_root, const char *build_root) {
  return below(exe, source_root) || (build_root != NULL && build_root[0] == '/' && below(exe, build_root));
}

bool kbox_running_from_source_tree(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return false;
  exe[n] = '\0';
  return kbox_is_dev_binary(exe, KBOX_SOURCE_ROOT, KBOX_BUILD_ROOT);
}
