/* The monotonic clock in milliseconds, for deadlines and durations. */
#ifndef KBOX_CLOCK_H
#define KBOX_CLOCK_H

#include <time.h>

static inline long long kbox_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

#endif
