/* The allocation policy (util/alloc.h): out of memory ends kbox with one message and SIGABRT. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/alloc.h"

/* Run fn in a child with stderr on a pipe; its wait status, and what it printed in buf. */
static int in_child(void (*fn)(void), char *buf, size_t n) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dup2(p[1], 2);
    signal(SIGABRT, SIG_DFL);
    fn();
    _exit(0);
  }
  close(p[1]);
  size_t len = 0;
  ssize_t r;
  while (len + 1 < n && (r = read(p[0], buf + len, n - 1 - len)) > 0) len += (size_t)r;
  buf[len] = '\0';
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

static void oom(void) { kbox_oom(); }

Test(alloc, oom_prints_one_line_and_aborts) {
  char out[256];
  int st = in_child(oom, out, sizeof(out));
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status 0x%x", st);
  cr_assert_str_eq(out, "kbox: out of memory\n");
}

#ifndef __SANITIZE_ADDRESS__ /* ASan reports an impossible size itself instead of returning NULL */
static void huge(void) {
  void *p = xmalloc(SIZE_MAX / 2);
  free(p);
}

Test(alloc, failed_xmalloc_is_the_oom_exit) {
  char out[256];
  int st = in_child(huge, out, sizeof(out));
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status 0x%x", st);
  cr_assert_str_eq(out, "kbox: out of memory\n");
}
#endif

Test(alloc, x_allocators_return_usable_memory) {
  char *s = xasprintf("%s-%d", "kbox", 7);
  cr_assert_str_eq(s, "kbox-7");
  char *d = xstrndup(s, 4);
  cr_assert_str_eq(d, "kbox");
  s = xrealloc(s, 64);
  cr_assert_str_eq(s, "kbox-7");
  int *z = xcalloc(4, sizeof(int));
  cr_assert(z[0] == 0 && z[3] == 0);
  free(z);
  free(d);
  free(s);
}
