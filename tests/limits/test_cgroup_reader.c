/* cgroup/ as the only reader of cgroup files: the mode of a layout, and the memory of another
   process's cgroup (what `kbox ps` and `inspect` show) found from its /proc/PID/cgroup. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "testlib.h"

static const char *mode_of(const char *self, const char *mountinfo) {
  static char out[16];
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_parse(&l, self, mountinfo, &err), 0);
  snprintf(out, sizeof(out), "%s", kbox_cgroup_layout_mode(&l));
  kbox_cgroup_layout_free(&l);
  return out;
}

Test(reader, modes) {
  const char *v2 = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  const char *v1 = "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
  char both[256];
  snprintf(both, sizeof(both), "%s%s", v1, "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
  cr_assert_str_eq(mode_of("0::/a\n", v2), "v2");
  cr_assert_str_eq(mode_of("4:memory:/a\n0::/\n", both), "hybrid");
  cr_assert_str_eq(mode_of("4:memory:/a\n", v1), "v1");
  cr_assert_str_eq(mode_of("4:memory:/a\n", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), "none");
}

Test(reader, gone_process_is_unknown) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  cr_assert_eq(kbox_cgroup_pid_memory(pid), -1);
}

/* A child in a cgroup of its own touches 48 MiB: its cgroup's memory is found from its pid. */
Test(reader, memory_of_another_process_cgroup, .timeout = 60) {
  if (!kt_is_root()) kt_skip_or_fail("needs root to create a cgroup");
  struct kbox_cgroup_layout layout;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_read(&layout, &err), 0);
  struct kbox_cgroup_limits lim = {.memory = 1ULL << 30, .swap = 0, .pids = 64, .cpus = 1};
  struct kbox_cgroup *cg = NULL;
  cr_assert_eq(kbox_cgroup_create(&layout, NULL, "readertest", &lim, false, &cg, &err), 0, "%s", err ? err->msg : "");
  if (cg->mech[KBOX_LIM_MEMORY] != KBOX_MECH_CGROUP1 && cg->mech[KBOX_LIM_MEMORY] != KBOX_MECH_CGROUP2) {
    kbox_cgroup_destroy(cg);
    kt_skip_or_fail("no memory cgroup on this host");
  }
  int go[2], ready[2];
  cr_assert_eq(pipe(go), 0);
  cr_assert_eq(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    char c;
    if (read(go[0], &c, 1) != 1) _exit(1);
    size_t n = 48u << 20;
    volatile char *p = malloc(n); /* volatile: the stores must happen (no elided malloc) */
    for (size_t i = 0; p != NULL && i < n; i += 4096) p[i] = 1;
    if (write(ready[1], "r", 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  cr_assert_eq(kbox_cgroup_attach(cg, pid, true, &err), 0, "%s", err ? err->msg : "");
  char c;
  cr_assert_eq(write(go[1], "g", 1), 1);
  cr_assert_eq(read(ready[0], &c, 1), 1);
  long long mem = kbox_cgroup_pid_memory(pid);
  long long ours = kbox_cgroup_pid_memory(getpid());
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  kbox_cgroup_destroy(cg);
  kbox_cgroup_layout_free(&layout);
  cr_assert_geq(mem, 48LL << 20, "the child's cgroup holds %lld bytes", mem);
  cr_assert_lt(mem, 1LL << 30, "%lld bytes: not the child's own cgroup", mem);
  cr_assert_neq(mem, ours, "the child's cgroup was confused with ours");
}
