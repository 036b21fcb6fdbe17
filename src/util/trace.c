#include "util/trace.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "util/log.h"

static bool enabled;
static struct timespec origin, last;
static const char *process = "host";

static double ms_between(const struct timespec *a, const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

void kbox_trace_init(void) {
  clock_gettime(CLOCK_MONOTONIC, &origin);
  last = origin;
}

void kbox_trace_enable(void) { enabled = true; }

long long kbox_trace_origin_ns(void) { return origin.tv_sec * 1000000000LL + origin.tv_nsec; }

void kbox_trace_set_origin_ns(long long ns) {
  origin.tv_sec = (time_t)(ns / 1000000000LL);
  origin.tv_nsec = (long)(ns % 1000000000LL);
  last = origin;
}

bool kbox_trace_enabled(void) { return enabled; }

void kbox_trace_process(const char *name) {
  process = name;
  clock_gettime(CLOCK_MONOTONIC, &last);
}

void kbox_trace_step(const char *what, ...) {
  if (!enabled) return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  char text[160];
  va_list ap;
  va_start(ap, what);
  vsnprintf(text, sizeof(text), what, ap);
  va_end(ap);
  kbox_log_line("trace", "%8.3f ms %+8.3f  %-8s %s", ms_between(&origin, &now), ms_between(&last, &now), process, text);
  last = now;
}
