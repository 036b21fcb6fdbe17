#include "util/error.h"
#include "util/alloc.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kbox_error_makev(kbox_error_t *err, int errno_, const char *fmt, va_list ap) {
  if (err == NULL || *err != NULL) return -1;
  struct kbox_error_s *e = xcalloc(1, sizeof(*e));
  char *base = xvasprintf(fmt, ap);
  if (errno_ != 0) {
    e->msg = xasprintf("%s: %s", base, strerror(errno_));
    free(base);
  } else {
    e->msg = base;
  }
  e->errno_ = errno_;
  e->exit_code = KBOX_EXIT_RUNTIME;
  *err = e;
  return -1;
}

int kbox_error_make(kbox_error_t *err, int errno_, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kbox_error_makev(err, errno_, fmt, ap);
  va_end(ap);
  return -1;
}

int kbox_error_make_code(kbox_error_t *err, int exit_code, int errno_, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kbox_error_makev(err, errno_, fmt, ap);
  va_end(ap);
  if (err != NULL && *err != NULL) (*err)->exit_code = exit_code;
  return -1;
}

/* Rewrite e->msg as PRE + SEP + msg or msg + SEP + POST. */
static void error_join(kbox_error_t e, const char *pre, const char *sep, const char *post) {
  char *joined = xasprintf("%s%s%s", pre, sep, post);
  free(e->msg);
  e->msg = joined;
}

int kbox_error_prefix(kbox_error_t *err, const char *fmt, ...) {
  if (err == NULL || *err == NULL) return -1;
  char *pre = NULL;
  va_list ap;
  va_start(ap, fmt);
  pre = xvasprintf(fmt, ap);
  va_end(ap);
  error_join(*err, pre, ": ", (*err)->msg);
  free(pre);
  return -1;
}

int kbox_error_hint(kbox_error_t *err, const char *fmt, ...) {
  if (err == NULL || *err == NULL) return -1;
  char *hint = NULL;
  va_list ap;
  va_start(ap, fmt);
  hint = xvasprintf(fmt, ap);
  va_end(ap);
  error_join(*err, (*err)->msg, "; fix: ", hint);
  free(hint);
  return -1;
}

void kbox_error_free(kbox_error_t *err) {
  if (err == NULL || *err == NULL) return;
  free((*err)->msg);
  free(*err);
  *err = NULL;
}

int kbox_error_report(kbox_error_t *err) {
  if (err == NULL || *err == NULL) return 0;
  int code = (*err)->exit_code;
  kbox_log(KBOX_LOG_ERROR, "%s", (*err)->msg); /* names the sandbox id once it is known */
  kbox_error_free(err);
  return code;
}
