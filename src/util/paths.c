#include "util/paths.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

bool kbox_running_from_source_tree(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return false;
  exe[n] = '\0';
  size_t len = strlen(KBOX_SOURCE_ROOT);
  return strncmp(exe, KBOX_SOURCE_ROOT, len) == 0 && exe[len] == '/';
}
