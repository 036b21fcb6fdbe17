#include "cgroup/files.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"

/* DIR/FILE in a fixed buffer. */
static const char *join(char *buf, size_t n, const char *dir, const char *file) {
  snprintf(buf, n, "%s/%s", dir, file);
  return buf;
}

int kbox_cg_write(const char *dir, const char *file, kbox_error_t *err, const char *fmt, ...) {
  char value[128], path[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(value, sizeof(value), fmt, ap);
  va_end(ap);
  return kbox_write_file(join(path, sizeof(path), dir, file), value, err);
}

bool kbox_cg_exists(const char *dir, const char *file) {
  char path[4096];
  return access(join(path, sizeof(path), dir, file), F_OK) == 0;
}

/* Whole small control file, or NULL. */
static char *slurp(const char *dir, const char *file) {
  char path[4096];
  char *text = NULL;
  kbox_error_t err = NULL;
  if (kbox_read_file(join(path, sizeof(path), dir, file), 1 << 16, &text, NULL, &err) < 0) {
    kbox_error_free(&err);
    return NULL;
  }
  return text;
}

bool kbox_cg_read_int(const char *dir, const char *file, int64_t *out) {
  cleanup_free char *text = slurp(dir, file);
  if (text == NULL) return false;
  if (strncmp(text, "max", 3) == 0) {
    *out = INT64_MAX;
    return true;
  }
  char *end = NULL;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (end == text || errno != 0) return false;
  *out = v;
  return true;
}

bool kbox_cg_read_keyed(const char *dir, const char *file, const char *key, int64_t *out) {
  cleanup_free char *text = slurp(dir, file);
  if (text == NULL) return false;
  size_t n = strlen(key);
  for (char *line = text; line != NULL && *line != '\0';) {
    if (strncmp(line, key, n) == 0 && line[n] == ' ') {
      *out = strtoll(line + n + 1, NULL, 10);
      return true;
    }
    line = strchr(line, '\n');
    if (line != NULL) line++;
  }
  return false;
}
