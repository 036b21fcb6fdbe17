/* Unit tests of the cgroup code against fake cgroup trees in a temporary directory: layout
   parsing (v2, hybrid, container roots), controller enabling, limit files for v2 and v1, missing
   controllers, unwritable files, verdict counters, stale-directory removal. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "testlib.h"

/* Contents of DIR/FILE (static buffer), "" when missing. */
static const char *get(const char *dir, const char *file) {
  static char buf[4096];
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  buf[0] = '\0';
  FILE *f = fopen(path, "r");
  if (f == NULL) return buf;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static char *sub(const char *dir, const char *name) {
  char *p = NULL;
  cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
  mkdir(p, 0755);
  return p;
}

/* A fake v2 cgroup directory with the files the kernel creates for memory, pids and cpu. */
static char *fake_v2_leaf(const char *root, const char *name, bool swap) {
  char *d = sub(root, name);
  const char *files[] = {"cgroup.procs", "memory.max", "memory.oom.group", "pids.max", "cpu.max", NULL};
  for (int i = 0; files[i]; i++) kt_write_in(d, files[i], "");
  if (swap) kt_write_in(d, "memory.swap.max", "");
  return d;
}

static const struct kbox_cgroup_limits LIM = {.memory = 64ULL << 20, .swap = 0, .pids = 32, .cpus = 0.5};

Test(layout, pure_v2) {
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_parse(&l, "0::/user.slice/session-1.scope\n",
                                        "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", &err), 0);
  cr_assert_str_eq(l.v2_mount, "/sys/fs/cgroup");
  cr_assert_str_eq(l.v2_self, "/user.slice/session-1.scope");
  for (int c = 0; c < KBOX_CTL_N; c++) cr_assert_null(l.v1_mount[c]);
  kbox_cgroup_layout_free(&l);
}

Test(layout, hybrid_like_this_host) {
  const char *self = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/\n";
  const char *mi =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_parse(&l, self, mi, &err), 0);
  cr_assert_str_eq(l.v2_mount, "/sys/fs/cgroup/unified");
  cr_assert_str_eq(l.v2_self, "/");
  cr_assert_str_eq(l.v1_mount[KBOX_CTL_MEMORY], "/sys/fs/cgroup/memory");
  cr_assert_str_eq(l.v1_self[KBOX_CTL_MEMORY], "/process_api/abc");
  cr_assert_str_eq(l.v1_mount[KBOX_CTL_PIDS], "/sys/fs/cgroup/pids");
  cr_assert_str_eq(l.v1_mount[KBOX_CTL_CPU], "/sys/fs/cgroup/cpu,cpuacct", "cpuset must not match cpu");
  cr_assert_str_eq(l.v1_self[KBOX_CTL_CPU], "/x");
  kbox_cgroup_layout_free(&l);
}

Test(layout, container_mount_root_and_escapes) {
  struct kbox_cgroup_layout l;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_layout_parse(&l, "0::/docker/abc/inner\n",
                                        "50 40 0:26 /docker/abc /sys/fs/my\\040cg ro - cgroup2 cgroup2 rw\n", &err), 0);
  cr_assert_str_eq(l.v2_mount, "/sys/fs/my cg");
  cr_assert_str_eq(l.v2_self, "/inner");
  char *p = kbox_cgroup_parent_dir(l.v2_mount, l.v2_self, NULL);
  cr_assert_str_eq(p, "/sys/fs/my cg/inner");
  free(p);
  p = kbox_cgroup_parent_dir(l.v2_mount, l.v2_self, "/kbox.slice/");
  cr_assert_str_eq(p, "/sys/fs/my cg/kbox.slice");
  free(p);
  p = kbox_cgroup_parent_dir("/m", "/", NULL);
  cr_assert_str_eq(p, "/m");
  free(p);
  kbox_cgroup_layout_free(&l);
}

Test(v2, enable_writes_subtree_control) {
  char *root = kt_tmpdir();
  kt_write_in(root, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  kt_write_in(root, "cgroup.subtree_control", "");
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_v2_available(root), 7u);
  cr_assert_eq(kbox_cgroup_v2_enable(root, 7u, &err), 0, "%s", err ? err->msg : "");
  cr_assert_str_eq(get(root, "cgroup.subtree_control"), "+memory +pids +cpu");
  /* Already enabled: nothing written (the file now names them). */
  kt_write_in(root, "cgroup.subtree_control", "cpu memory pids\n");
  cr_assert_eq(kbox_cgroup_v2_enable(root, 7u, &err), 0);
  cr_assert_str_eq(get(root, "cgroup.subtree_control"), "cpu memory pids\n");
  kt_rmrf(root);
}

Test(v2, enable_missing_controller_names_it) {
  char *root = kt_tmpdir();
  kt_write_in(root, "cgroup.controllers", "cpu memory\n");
  kt_write_in(root, "cgroup.subtree_control", "");
  kbox_error_t err = NULL;
  cr_assert_lt(kbox_cgroup_v2_enable(root, 7u, &err), 0);
  cr_assert(strstr(err->msg, "pids controller is not available") != NULL, "%s", err->msg);
  cr_assert(strstr(err->msg, "--cgroup-parent") != NULL, "%s", err->msg);
  cr_assert_str_eq(get(root, "cgroup.subtree_control"), "", "nothing may be written on failure");
  kbox_error_free(&err);
  kt_rmrf(root);
}

Test(v2, apply_writes_every_limit) {
  char *root = kt_tmpdir();
  char *d = fake_v2_leaf(root, "sb", true);
  enum kbox_mech mech[KBOX_LIM_N] = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_v2_apply(d, 7u, &LIM, mech, &err), 0, "%s", err ? err->msg : "");
  cr_assert_str_eq(get(d, "memory.max"), "67108864");
  cr_assert_str_eq(get(d, "memory.swap.max"), "0");
  cr_assert_str_eq(get(d, "memory.oom.group"), "1");
  cr_assert_str_eq(get(d, "pids.max"), "32");
  cr_assert_str_eq(get(d, "cpu.max"), "50000 100000");
  for (int l = 0; l < KBOX_LIM_N; l++) cr_assert_eq(mech[l], KBOX_MECH_CGROUP2, "%s", kbox_lim_name(l));
  kt_rmrf(root);
}

Test(v2, apply_without_swap_accounting_or_pids_controller) {
  char *root = kt_tmpdir();
  char *d = fake_v2_leaf(root, "sb", false);
  char path[4096];
  snprintf(path, sizeof(path), "%s/pids.max", d);
  unlink(path);
  enum kbox_mech mech[KBOX_LIM_N] = {0};
  kbox_error_t err = NULL;
  cr_assert_lt(kbox_cgroup_v2_apply(d, 7u, &LIM, mech, &err), 0);
  cr_assert(strstr(err->msg, "pids.max") != NULL, "%s", err->msg);
  cr_assert_eq(mech[KBOX_LIM_MEMORY], KBOX_MECH_CGROUP2);
  cr_assert_eq(mech[KBOX_LIM_SWAP], KBOX_MECH_NONE, "no memory.swap.max: swap is not enforced by cgroup");
  cr_assert_eq(mech[KBOX_LIM_PIDS], KBOX_MECH_NONE);
  cr_assert_eq(mech[KBOX_LIM_CPU], KBOX_MECH_CGROUP2);
  kbox_error_free(&err);
  kt_rmrf(root);
}

/* Drop to nobody so file permissions apply (root ignores them). */
static void become_nobody(void) {
  if (geteuid() != 0) return;
  cr_assert_eq(setgroups(0, NULL), 0);
  cr_assert_eq(setresgid(KT_NOBODY, KT_NOBODY, KT_NOBODY), 0);
  cr_assert_eq(setresuid(KT_NOBODY, KT_NOBODY, KT_NOBODY), 0);
}

Test(v2, unwritable_limit_file_is_an_error_naming_it) {
  become_nobody();
  char *root = kt_tmpdir();
  char *d = fake_v2_leaf(root, "sb", true);
  char path[4096];
  snprintf(path, sizeof(path), "%s/memory.max", d);
  chmod(path, 0444);
  enum kbox_mech mech[KBOX_LIM_N] = {0};
  kbox_error_t err = NULL;
  cr_assert_lt(kbox_cgroup_v2_apply(d, 7u, &LIM, mech, &err), 0);
  cr_assert(strstr(err->msg, "memory.max") != NULL && strstr(err->msg, "Permission denied") != NULL, "%s", err->msg);
  cr_assert_eq(mech[KBOX_LIM_MEMORY], KBOX_MECH_NONE);
  cr_assert_eq(mech[KBOX_LIM_PIDS], KBOX_MECH_CGROUP2, "the other controllers still get their limits");
  kbox_error_free(&err);
  kt_rmrf(root);
}

Test(v2, unwritable_subtree_control_explains_delegation) {
  become_nobody();
  char *root = kt_tmpdir();
  kt_write_in(root, "cgroup.controllers", "cpu memory pids\n");
  kt_write_in(root, "cgroup.subtree_control", "");
  char path[4096];
  snprintf(path, sizeof(path), "%s/cgroup.subtree_control", root);
  chmod(path, 0444);
  kbox_error_t err = NULL;
  cr_assert_lt(kbox_cgroup_v2_enable(root, 7u, &err), 0);
  cr_assert(strstr(err->msg, "delegate") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  kt_rmrf(root);
}

Test(v2, stats_from_event_files) {
  char *root = kt_tmpdir();
  kt_write_in(root, "memory.peak", "1234567\n");
  kt_write_in(root, "memory.events", "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 1\n");
  kt_write_in(root, "pids.events", "max 5\n");
  kt_write_in(root, "cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n");
  struct kbox_cgroup_stats s = {.memory_peak = -1, .oom_kills = -1, .pids_max_hits = -1, .cpu_seconds = -1};
  kbox_cgroup_v2_stats(root, &s);
  cr_assert_eq(s.memory_peak, 1234567);
  cr_assert_eq(s.oom_kills, 1, "oom_kill, not oom or oom_group_kill");
  cr_assert_eq(s.pids_max_hits, 5);
  cr_assert_float_eq(s.cpu_seconds, 1.5, 1e-9);
  kt_rmrf(root);
}

Test(v1, apply_memory_memsw_pids_cpu) {
  char *root = kt_tmpdir();
  char *mem = sub(root, "memory");
  kt_write_in(mem, "memory.limit_in_bytes", "");
  kt_write_in(mem, "memory.memsw.limit_in_bytes", "");
  char *pids = sub(root, "pids");
  kt_write_in(pids, "pids.max", "");
  char *cpu = sub(root, "cpu");
  kt_write_in(cpu, "cpu.cfs_period_us", "");
  kt_write_in(cpu, "cpu.cfs_quota_us", "");
  struct kbox_cgroup_limits lim = LIM;
  lim.swap = 16ULL << 20;
  enum kbox_mech mech[KBOX_LIM_N] = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_v1_apply(mem, KBOX_CTL_MEMORY, &lim, mech, &err), 0);
  cr_assert_eq(kbox_cgroup_v1_apply(pids, KBOX_CTL_PIDS, &lim, mech, &err), 0);
  cr_assert_eq(kbox_cgroup_v1_apply(cpu, KBOX_CTL_CPU, &lim, mech, &err), 0);
  cr_assert_str_eq(get(mem, "memory.limit_in_bytes"), "67108864");
  cr_assert_str_eq(get(mem, "memory.memsw.limit_in_bytes"), "83886080", "memsw = memory + swap");
  cr_assert_str_eq(get(pids, "pids.max"), "32");
  cr_assert_str_eq(get(cpu, "cpu.cfs_period_us"), "100000");
  cr_assert_str_eq(get(cpu, "cpu.cfs_quota_us"), "50000");
  for (int l = 0; l < KBOX_LIM_N; l++) cr_assert_eq(mech[l], KBOX_MECH_CGROUP1, "%s", kbox_lim_name(l));
  kt_rmrf(root);
}

Test(v1, memory_without_memsw_leaves_swap_unenforced) {
  char *root = kt_tmpdir();
  kt_write_in(root, "memory.limit_in_bytes", "");
  enum kbox_mech mech[KBOX_LIM_N] = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_v1_apply(root, KBOX_CTL_MEMORY, &LIM, mech, &err), 0);
  cr_assert_eq(mech[KBOX_LIM_MEMORY], KBOX_MECH_CGROUP1);
  cr_assert_eq(mech[KBOX_LIM_SWAP], KBOX_MECH_NONE);
  kt_rmrf(root);
}

Test(v1, stats_from_oom_control) {
  char *root = kt_tmpdir();
  kt_write_in(root, "memory.max_usage_in_bytes", "67108864\n");
  kt_write_in(root, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
  struct kbox_cgroup_stats s = {.memory_peak = -1, .oom_kills = -1, .pids_max_hits = -1, .cpu_seconds = -1};
  kbox_cgroup_v1_stats(root, KBOX_CTL_MEMORY, &s);
  cr_assert_eq(s.memory_peak, 67108864);
  cr_assert_eq(s.oom_kills, 3);
  cr_assert_eq(s.pids_max_hits, -1, "unknown stays unknown");
  kt_rmrf(root);
}

/* A fake tree is a plain directory: mkdir of the sandbox cgroup creates no control files, exactly
   like a hierarchy without the controllers. Limits must fall back to rlimits, or fail when required. */
Test(create, fake_tree_without_controller_files_falls_back) {
  char *root = kt_tmpdir();
  char *v2 = sub(root, "unified");
  kt_write_in(v2, "cgroup.controllers", "cpu memory pids\n");
  kt_write_in(v2, "cgroup.subtree_control", "");
  struct kbox_cgroup_layout l = {.v2_mount = v2, .v2_self = (char *)"/"};
  struct kbox_cgroup *cg = NULL;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_create(&l, NULL, "unit", &LIM, false, &cg, &err), 0, "%s", err ? err->msg : "");
  cr_assert_str_eq(get(v2, "cgroup.subtree_control"), "+memory +pids +cpu");
  cr_assert_not_null(cg->v2_dir);
  cr_assert_eq(cg->mech[KBOX_LIM_MEMORY], KBOX_MECH_RLIMIT);
  cr_assert_eq(cg->mech[KBOX_LIM_PIDS], KBOX_MECH_RLIMIT);
  cr_assert_eq(cg->mech[KBOX_LIM_CPU], KBOX_MECH_NONE);
  cr_assert(strstr(cg->why_not[KBOX_LIM_MEMORY], "memory.max") != NULL, "%s", cg->why_not[KBOX_LIM_MEMORY]);
  char *dir = strdup(cg->v2_dir);
  kbox_cgroup_destroy(cg);
  cr_assert_neq(access(dir, F_OK), 0, "destroy removes the directory");
  cr_assert_lt(kbox_cgroup_create(&l, NULL, "unit", &LIM, true, &cg, &err), 0);
  cr_assert(strstr(err->msg, "--require-limits") != NULL && strstr(err->msg, "cpu NOT enforced") != NULL, "%s", err->msg);
  cr_assert_neq(access(dir, F_OK), 0, "a refused create leaves nothing behind");
  kbox_error_free(&err);
  free(dir);
  kt_rmrf(root);
}

Test(create, no_hierarchies_at_all) {
  struct kbox_cgroup_layout l = {0};
  struct kbox_cgroup *cg = NULL;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_cgroup_create(&l, NULL, "unit", &LIM, false, &cg, &err), 0);
  cr_assert_null(cg->v2_dir);
  cr_assert_eq(cg->mech[KBOX_LIM_MEMORY], KBOX_MECH_RLIMIT);
  cr_assert_eq(cg->mech[KBOX_LIM_SWAP], KBOX_MECH_RLIMIT, "swap is inside RLIMIT_AS");
  cr_assert_eq(cg->mech[KBOX_LIM_PIDS], KBOX_MECH_RLIMIT);
  cr_assert_eq(cg->mech[KBOX_LIM_CPU], KBOX_MECH_NONE);
  kbox_cgroup_destroy(cg);
}

Test(sweep, removes_only_empty_dirs_of_dead_kbox_processes) {
  char *root = kt_tmpdir();
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  char name[128];
  snprintf(name, sizeof(name), "kbox.%d.gone", (int)dead);
  free(sub(root, name));
  free(sub(root, "kbox.1.alive"));
  snprintf(name, sizeof(name), "kbox.%d.mine", (int)getpid());
  free(sub(root, name));
  free(sub(root, "unrelated"));
  cr_assert_eq(kbox_cgroup_sweep_stale(root), 1);
  snprintf(name, sizeof(name), "%s/kbox.%d.gone", root, (int)dead);
  cr_assert_neq(access(name, F_OK), 0);
  char p[4096];
  snprintf(p, sizeof(p), "%s/kbox.1.alive", root);
  cr_assert_eq(access(p, F_OK), 0);
  snprintf(p, sizeof(p), "%s/unrelated", root);
  cr_assert_eq(access(p, F_OK), 0);
  kt_rmrf(root);
}
