/* kbox's allocation policy: running out of memory is not an error kbox reports and recovers from,
   it ends the process. x* allocators never return NULL: on failure they print "kbox: out of
   memory" (one write(2), no allocation, so it works when nothing else does) and abort.
   Header-only so every library built from util/ files (kbox, the kernel module, the warm lib)
   gets them without a source file added to its build. */
#ifndef KBOX_ALLOC_H
#define KBOX_ALLOC_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The one out-of-memory exit. */
__attribute__((noreturn, cold)) static inline void kbox_oom(void) {
  static const char msg[] = "kbox: out of memory\n";
  if (write(2, msg, sizeof(msg) - 1) < 0) {} /* nothing left to report to */
  abort();
}

static inline void *xmalloc(size_t n) {
  void *p = malloc(n != 0 ? n : 1);
  if (p == NULL) kbox_oom();
  return p;
}

static inline void *xcalloc(size_t count, size_t size) {
  void *p = calloc(count != 0 ? count : 1, size != 0 ? size : 1);
  if (p == NULL) kbox_oom();
  return p;
}

static inline void *xrealloc(void *old, size_t n) {
  void *p = realloc(old, n != 0 ? n : 1);
  if (p == NULL) kbox_oom();
  return p;
}

static inline char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (p == NULL) kbox_oom();
  return p;
}

static inline char *xstrndup(const char *s, size_t n) {
  char *p = strndup(s, n);
  if (p == NULL) kbox_oom();
  return p;
}

__attribute__((format(printf, 1, 0))) static inline char *xvasprintf(const char *fmt, va_list ap) {
  char *out = NULL;
  if (vasprintf(&out, fmt, ap) < 0) kbox_oom();
  return out;
}

__attribute__((format(printf, 1, 2))) static inline char *xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *out = xvasprintf(fmt, ap);
  va_end(ap);
  return out;
}

#endif
