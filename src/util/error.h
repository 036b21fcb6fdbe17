/* Errors as values: functions return 0 or a negative number and fill *err. */
#ifndef KBOX_ERROR_H
#define KBOX_ERROR_H

#include <stdarg.h>

/* Exit codes of kbox itself (documented in README "Exit codes"). */
enum {
  KBOX_EXIT_TIMEOUT = 124,  /* --timeout ended the workload */
  KBOX_EXIT_RUNTIME = 125,  /* kbox failed: bad option, setup step failed */
  KBOX_EXIT_NOEXEC = 126,   /* the command exists but cannot be executed */
  KBOX_EXIT_NOTFOUND = 127, /* the command was not found in the sandbox */
};

struct kbox_error_s {
  int errno_;    /* errno of the failure, 0 when none */
  int exit_code; /* what kbox should exit with, KBOX_EXIT_RUNTIME by default */
  char *msg;     /* full one-line message, already including the errno text */
};
typedef struct kbox_error_s *kbox_error_t;

/* Fill *err (if empty) with a formatted message; appends strerror(errno_) when errno_ != 0.
   Always returns -1 so callers can write `return kbox_error_make(...)`. */
int kbox_error_make(kbox_error_t *err, int errno_, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kbox_error_makev(kbox_error_t *err, int errno_, const char *fmt, va_list ap);
/* Same with an explicit exit code. */
int kbox_error_make_code(kbox_error_t *err, int exit_code, int errno_, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefix the message of an existing error with more context ("setting up mounts: ..."). */
int kbox_error_prefix(kbox_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append a suggested fix: "...; fix: TEXT". */
int kbox_error_hint(kbox_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kbox_error_free(kbox_error_t *err);
/* Print the message as an error log line ("kbox[ID]: error: MSG" once the sandbox id is known), free
   the error and return its exit code. */
int kbox_error_report(kbox_error_t *err);

#define cleanup_error __attribute__((cleanup(kbox_error_free)))

#endif
