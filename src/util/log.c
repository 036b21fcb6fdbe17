#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum kbox_log_level current_level = KBOX_LOG_WARN;
static char current_id[80];

void kbox_log_set_level(enum kbox_log_level level) { current_level = level; }

void kbox_log_set_id(const char *id) {
  snprintf(current_id, sizeof(current_id), "%s", id != NULL ? id : "");
}

void kbox_log(enum kbox_log_level level, const char *fmt, ...) {
  static const char *names[] = {"error", "warning", "info", "debug"};
  if (level > current_level) return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (current_id[0] != '\0')
    fprintf(stderr, "kbox[%s]: %s: %s\n", current_id, names[level], line);
  else
    fprintf(stderr, "kbox: %s: %s\n", names[level], line);
}
