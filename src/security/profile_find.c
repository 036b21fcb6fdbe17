#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "security/security.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/paths.h"

/* NAME.json in dir, if it exists. */
static char *candidate(const char *dir, const char *name) {
  char *p = xasprintf("%s/%s.json", dir, name);
  if (access(p, F_OK) == 0) return p;
  free(p);
  return NULL;
}

static bool valid_name(const char *s) {
  if (*s == '\0' || strlen(s) > 64) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
      return false;
  return true;
}

int kbox_profile_find(const char *name_or_path, char **out, kbox_error_t *err) {
  size_t len = strlen(name_or_path);
  if (strchr(name_or_path, '/') != NULL || (len > 5 && strcmp(name_or_path + len - 5, ".json") == 0)) {
    *out = xstrdup(name_or_path);
    return 0;
  }
  if (!valid_name(name_or_path))
    return kbox_error_make(err, 0, "--profile: '%s' is neither a profile name (letters, digits, - and _) nor a path",
                           name_or_path);
  const char *dirs[2] = {KBOX_DATADIR "/profiles", KBOX_SOURCE_ROOT "/profiles"};
  if (kbox_running_from_source_tree()) {
    dirs[0] = KBOX_SOURCE_ROOT "/profiles";
    dirs[1] = KBOX_DATADIR "/profiles";
  }
  for (size_t i = 0; i < 2; i++)
    if ((*out = candidate(dirs[i], name_or_path)) != NULL) return 0;
  kbox_error_make(err, 0, "--profile: no profile named '%s' in %s or %s", name_or_path, dirs[0], dirs[1]);
  return kbox_error_hint(err, "use 'default' or 'strict', or give the path of a JSON profile");
}
