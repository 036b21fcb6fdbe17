#include "sandbox/achieved.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const kbox_step_names[KBOX_STEP_N] = {"hostname", "proc", "sysfs", "idmap"};

void kbox_achieved_note(struct kbox_achieved *a, enum kbox_step step, const char *fmt, ...) {
  a->degraded |= 1u << step;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->why[step], sizeof(a->why[step]), fmt, ap);
  va_end(ap);
  for (char *c = a->why[step]; *c != '\0'; c++)
    if (*c == '\n') *c = ' '; /* the channel encoding is line based */
}

void kbox_achieved_encode(const struct kbox_achieved *a, char *text, size_t n) {
  size_t off = 0;
  text[0] = '\0';
  for (int s = 0; s < KBOX_STEP_N; s++) {
    if (!kbox_achieved_degraded(a, s)) continue;
    int w = snprintf(text + off, n - off, "%s\n", a->why[s]);
    if (w < 0 || (size_t)w >= n - off) break;
    off += (size_t)w;
  }
}

void kbox_achieved_decode(struct kbox_achieved *a, uint32_t degraded, const char *text) {
  memset(a, 0, sizeof(*a));
  a->degraded = degraded & ((1u << KBOX_STEP_N) - 1);
  const char *p = text;
  for (int s = 0; s < KBOX_STEP_N; s++) {
    if (!kbox_achieved_degraded(a, s)) continue;
    size_t len = p != NULL ? strcspn(p, "\n") : 0;
    snprintf(a->why[s], sizeof(a->why[s]), "%.*s", (int)len, p != NULL ? p : "");
    if (p != NULL) p = p[len] == '\n' ? p + len + 1 : NULL;
  }
}
