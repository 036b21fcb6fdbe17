/* Shared helpers for kbox's criterion tests: run kbox, capture its output, skip rules. */
#ifndef KBOX_TESTLIB_H
#define KBOX_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct kt_result {
  int status;    /* raw wait status */
  int exit_code; /* WEXITSTATUS, or 128+sig */
  char *out;     /* captured stdout (NUL-terminated) */
  char *err;     /* captured stderr */
};

/* Path of the kbox binary under test ($KBOX_BIN). */
const char *kt_kbox(void);
/* Path of a built test helper (e.g. "probe") from $KBOX_BUILD_ROOT/tests/helpers. */
const char *kt_helper(const char *name);
/* Run argv (NULL-terminated) with optional stdin text and extra env ("K=V" NULL-terminated, may be
   NULL); as_uid >= 0 runs it as that uid/gid (rootless tests). Waits at most timeout_s seconds. */
int kt_run(char *const argv[], char *const extra_env[], int as_uid, int timeout_s, struct kt_result *r);
void kt_result_free(struct kt_result *r);
/* Start argv in the background like kt_run (extra env, as_uid) with stdout and stderr going to
   the file out (created or truncated) and stdin inherited; returns the pid, the caller reaps it. */
pid_t kt_spawn(char *const argv[], char *const extra_env[], int as_uid, const char *out);
/* Create or replace path (mode 0644) with len bytes of data; fails the test when it cannot. */
void kt_write_data(const char *path, const void *data, size_t len);
/* kt_write_data of a NUL-terminated text. */
void kt_write_file(const char *path, const char *text);
/* kt_write_file of DIR/NAME. */
void kt_write_in(const char *dir, const char *name, const char *text);
/* Skip the calling test (exit 77 semantics via criterion's cr_skip) unless KBOX_MUST_WORK=1, in
   which case it fails with the reason. */
void kt_skip_or_fail(const char *reason);
/* True when running as root. */
bool kt_is_root(void);
/* Value of "key=value" line in text (static buffer), or NULL. */
const char *kt_field(const char *text, const char *key);
/* A fresh temporary directory (mode 0755), removed by kt_rmrf. */
char *kt_tmpdir(void);
void kt_rmrf(const char *path);
/* Can this host create user namespaces as uid (for rootless tests)? */
bool kt_userns_works(int as_uid);

/* How many entries DIR has (0 when it does not exist); their names, space-separated, in names. */
int kt_dir_entries(const char *dir, char *names, size_t n);

#define KT_NOBODY 65534

#endif
