/* Fixtures for the `kbox run` integration tests: a tiny rootfs (static busybox + probe) and runners
   that execute kbox as root or as an unprivileged user. */
#ifndef KBOX_FIXTURE_H
#define KBOX_FIXTURE_H

#include <sys/types.h>
#include "testlib.h"

/* Build (once per process) a minimal rootfs readable by everyone; returns its path. */
const char *fx_rootfs(void);
/* The rootfs a sandbox started by as_uid uses: rootless users get a copy they own, as they would
   have built it themselves (files owned by unmapped host ids cannot be copied up). */
const char *fx_rootfs_as(int as_uid);
/* Run kbox run [opts...] -- cmd... as uid (-1: as ourselves). opts and cmd are NULL-terminated. */
void fx_run(int as_uid, const char *const *opts, const char *const *cmd, struct kt_result *r);
/* Start kbox in the background with stdout on a pipe; returns its pid and the pipe's read end. */
pid_t fx_spawn(int as_uid, const char *const *opts, const char *const *cmd, int *out_fd);
/* Read from fd until a line equal to `line` arrives (or timeout); true when seen. */
bool fx_wait_line(int fd, const char *line, int timeout_s);
/* Require root / a working rootless setup, else skip (or fail under KBOX_MUST_WORK=1). */
void fx_require(int as_uid);
/* Remove the test rootfs copies made by this test process. */
void fx_cleanup(void);
/* Host pids of all descendants of pid (scanning /proc), at most max; returns the count. */
int fx_descendants(pid_t pid, pid_t *out, int max);

#define FX_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define FX_NONE ((const char *const[]){NULL})

/* Define one test body run twice: as root and rootless (as nobody). */
#define FX_BOTH(suite, name)                                   \
  static void name##_body(int uid);                            \
  Test(suite##_root, name, .fini = fx_cleanup) { fx_require(-1); name##_body(-1); } \
  Test(suite##_rootless, name, .fini = fx_cleanup) { fx_require(KT_NOBODY); name##_body(KT_NOBODY); } \
  static void name##_body(int uid)

#endif
