/* The protection list: KBOX_REQUIRE parsing and checking, the summary line, the status file, and a
   real probe in a user namespace whose user.max_user_namespaces is 0. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remote/protections.h"
#include "testlib.h"

Test(protections, require_parsing) {
  uint32_t m = 0;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_protections_parse_require("userns,seccomp", &m, &err), 0);
  cr_assert_eq(m, (1u << KBOX_PROT_USERNS) | (1u << KBOX_PROT_SECCOMP));
  cr_assert_eq(kbox_protections_parse_require("", &m, &err), 0);
  cr_assert_eq(m, 0);
  cr_assert_eq(kbox_protections_parse_require("all", &m, &err), 0);
  cr_assert_eq(m, (1u << KBOX_PROT_COUNT) - 1);
  cr_assert_eq(kbox_protections_parse_require("userns,selinux", &m, &err), -1);
  cr_assert(strstr(err->msg, "KBOX_REQUIRE") && strstr(err->msg, "selinux"), "%s", err->msg);
  kbox_error_free(&err);
}

static void fake(struct kbox_protections *p) {
  memset(p, 0, sizeof(*p));
  for (int i = 0; i < KBOX_PROT_COUNT; i++) p->active[i] = true;
  kbox_protections_set(p, KBOX_PROT_USERNS, false, "creating a user namespace: No space left on device");
  kbox_protections_set(p, KBOX_PROT_CGROUP, false, "no writable cgroup");
}

Test(protections, check_summary_and_json) {
  struct kbox_protections p;
  fake(&p);
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_protections_check(&p, 1u << KBOX_PROT_SECCOMP, &err), 0);
  cr_assert_eq(kbox_protections_check(&p, (1u << KBOX_PROT_USERNS) | (1u << KBOX_PROT_SECCOMP), &err), -1);
  cr_assert(strstr(err->msg, "userns (creating a user namespace: No space left on device)") != NULL, "%s", err->msg);
  cr_assert(strstr(err->msg, "seccomp") == NULL, "%s", err->msg);
  kbox_error_free(&err);
  char line[1024];
  kbox_protections_summary(&p, line, sizeof(line));
  cr_assert(strstr(line, "protections active: pidns,mountns,netns,ipcns,utsns,cgroupns,seccomp,caps; missing: userns (") == line, "%s", line);
  cr_assert(strstr(line, "cgroup (no writable cgroup)") != NULL, "%s", line);
  cr_assert_eq(kbox_protections_ns_flags(&p) & CLONE_NEWUSER, 0);
  cr_assert_neq(kbox_protections_ns_flags(&p) & CLONE_NEWPID, 0);
  char *dir = kt_tmpdir();
  char path[4096];
  snprintf(path, sizeof(path), "%s/status.json", dir);
  json_t *extra = json_pack("{s:s}", "kernel_id", "k1");
  cr_assert_eq(kbox_protections_write_status(&p, extra, path, &err), 0);
  json_error_t jerr;
  json_t *doc = json_load_file(path, 0, &jerr);
  cr_assert_not_null(doc);
  cr_assert_str_eq(json_string_value(json_object_get(doc, "kernel_id")), "k1");
  json_t *prot = json_object_get(doc, "protections");
  cr_assert_eq(json_array_size(json_object_get(prot, "active")), KBOX_PROT_COUNT - 2);
  cr_assert_not_null(json_object_get(json_object_get(prot, "missing"), "userns"));
  json_decref(doc);
  json_decref(extra);
  kt_rmrf(dir);
  free(dir);
}

/* Write a /proc file, failing the test with the reason. */
static void put(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  cr_assert_geq(fd, 0, "open %s", path);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text), "write %s", path);
  close(fd);
}

Test(protections, probe_sees_refused_user_namespaces, .timeout = 60) {
  if (!kt_is_root()) kt_skip_or_fail("needs root to map a full id range into a test user namespace");
  int pipefd[2], go[2];
  cr_assert_eq(pipe(pipefd), 0);
  cr_assert_eq(pipe(go), 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* child: a user namespace where we are root, with user namespaces then disabled inside it */
    if (unshare(CLONE_NEWUSER) < 0) _exit(77);
    char buf[64];
    /* id maps must be written from outside: ask the parent */
    if (write(pipefd[1], "m", 1) != 1 || read(go[0], buf, 1) != 1) _exit(3);
    if (setresuid(0, 0, 0) < 0) _exit(4);
    put("/proc/sys/user/max_user_namespaces", "0\n");
    struct kbox_protections p;
    kbox_protections_probe(&p);
    kbox_protections_summary(&p, buf, sizeof(buf));
    if (p.active[KBOX_PROT_USERNS]) _exit(10);
    if (strstr(p.why[KBOX_PROT_USERNS], "No space left") == NULL) _exit(11);
    /* root in this namespace: the other namespaces still work */
    if (!p.active[KBOX_PROT_PIDNS] || !p.active[KBOX_PROT_MOUNTNS] || !p.active[KBOX_PROT_NETNS]) _exit(12);
    uint32_t req = 1u << KBOX_PROT_USERNS;
    kbox_error_t err = NULL;
    if (kbox_protections_check(&p, req, &err) == 0) _exit(13);
    _exit(0);
  }
  char c;
  cr_assert_eq(read(pipefd[0], &c, 1), 1);
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
  put(path, "0 0 65536\n");
  snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
  put(path, "0 0 65536\n");
  cr_assert_eq(write(go[1], "g", 1), 1);
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) kt_skip_or_fail("user namespaces unavailable on this host");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "probe check %d failed", WEXITSTATUS(st));
}
