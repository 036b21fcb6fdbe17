/* --trace-setup: one stderr line per set-up step, with the time since kbox's main() and since the
   previous step of the same process (host, the sandbox's pid 1, the workload). Off by default; a
   step costs one clock read and a branch then. */
#ifndef KBOX_TRACE_H
#define KBOX_TRACE_H

#include <stdbool.h>

/* Take kbox's time origin (first thing in main). */
void kbox_trace_init(void);
void kbox_trace_enable(void);
/* The origin as nanoseconds of CLOCK_MONOTONIC, and setting it (a warm kernel's fork traces against
   its kbox's origin, src/warm). */
long long kbox_trace_origin_ns(void);
void kbox_trace_set_origin_ns(long long ns);
bool kbox_trace_enabled(void);
/* Name the process whose steps follow ("host", "pid1", "workload"); resets the step clock. */
void kbox_trace_process(const char *name);
/* The step WHAT just ended: print it when tracing. */
void kbox_trace_step(const char *what, ...) __attribute__((format(printf, 1, 2)));

#endif
