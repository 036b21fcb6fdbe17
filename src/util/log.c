#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

void kbox_log_line(const char *tag, const char *fmt, ...) {
  char msg[1024], line[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  int n = current_id[0] != '\0' ? snprintf(line, sizeof(line), "kbox[%s]: %s: %s\n", current_id, tag, msg)
                                : snprintf(line, sizeof(line), "kbox: %s: %s\n", tag, msg);
  if (n > (int)sizeof(line) - 1) n = (int)sizeof(line) - 1;
  fflush(stderr);
  if (write(2, line, (size_t)n) < 0) return;
}
