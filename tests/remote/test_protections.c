/* The protection list: KBOX_REQUIRE parsing and checking, the summary line, the status file with
   partial and missing entries, and a real probe in a user namespace whose user.max_user_namespaces
   is 0. */
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
#include "security/security.h"
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
  for (int i = 0; i < KBOX_PROT_COUNT; i++) kbox_protections_set(p, i, true, "");
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
  cr_assert(strstr(line, "protections active: pidns,mountns,netns,ipcns,utsns,cgroupns,seccomp,caps,hostname,"
                         "loopback,overlay,proc,idmap; missing: userns (") == line, "%s", line);
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

/* A fallback that stands in for a refused step: listed as partial, and KBOX_REQUIRE refuses it. */
Test(protections, partial_is_listed_and_required_fails) {
  struct kbox_protections p;
  fake(&p);
  kbox_protections_set_state(&p, KBOX_PROT_PROC, KBOX_VERDICT_PARTIAL, "mounting a fresh /proc: Operation not permitted; the pod's /proc is bound read-only instead");
  cr_assert_not(kbox_protections_active(&p, KBOX_PROT_PROC));
  cr_assert_neq(kbox_protections_ns_flags(&p) & CLONE_NEWPID, 0, "a partial protection is not a missing namespace");
  char line[1024];
  kbox_protections_summary(&p, line, sizeof(line));
  cr_assert(strstr(line, "idmap; partial: proc (mounting a fresh /proc: Operation not permitted; the pod's") != NULL, "%s", line);
  cr_assert(strstr(line, "; missing: userns (") != NULL, "%s", line);
  json_t *j = kbox_protections_json(&p);
  cr_assert_not_null(json_object_get(json_object_get(j, "partial"), "proc"));
  cr_assert_null(json_object_get(json_object_get(j, "missing"), "proc"));
  json_decref(j);
  uint32_t req = 0;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_protections_parse_require("proc", &req, &err), 0);
  cr_assert_eq(kbox_protections_check(&p, req, &err), -1);
  cr_assert(strstr(err->msg, "proc (partial: mounting a fresh /proc") != NULL, "%s", err->msg);
  kbox_error_free(&err);
}

/* The spec kbox run would build for a rootfs directory (the probe needs its layers and profile). */
static void test_spec(struct kbox_spec *spec, const char *rootfs) {
  kbox_spec_init(spec);
  spec->id = strdup("protprobe");
  spec->sandbox.hostname = strdup("protprobe");
  spec->sec.profile = strdup("default");
  kbox_strv_add(&spec->sandbox.rootfs, rootfs);
  spec->rootless = geteuid() != 0;
  kbox_error_t err = NULL;
  if (kbox_security_prepare(&spec->sec, &err) < 0) {
    fprintf(stderr, "%s\n", err->msg);
    _exit(20);
  }
  kbox_security_fill_limits(&spec->sec, &spec->limits);
  kbox_security_fill_net(&spec->sec, &spec->sandbox, &spec->audit_path);
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
  char *rootfs = kt_tmpdir();
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
    static struct kbox_protections p;
    struct kbox_spec spec;
    test_spec(&spec, rootfs);
    kbox_protections_probe(&p, &spec);
    if (kbox_protections_active(&p, KBOX_PROT_USERNS)) _exit(10);
    if (strstr(p.probe.v[KBOX_PROT_USERNS].detail, "creating a user namespace:") == NULL ||
        strstr(p.probe.v[KBOX_PROT_USERNS].detail, "No space left") == NULL) _exit(11);
    /* root in this namespace: the other namespaces still work */
    if (!kbox_protections_active(&p, KBOX_PROT_PIDNS) || !kbox_protections_active(&p, KBOX_PROT_MOUNTNS) ||
        !kbox_protections_active(&p, KBOX_PROT_NETNS)) _exit(12);
    /* the sandbox's other steps work without a user namespace; but root of a user namespace that
       does not own the mount namespace cannot take the layers' trees, exactly as kbox run fails */
    if (!kbox_protections_active(&p, KBOX_PROT_PROC) || !kbox_protections_active(&p, KBOX_PROT_SECCOMP) ||
        !kbox_protections_active(&p, KBOX_PROT_CAPS) || !kbox_protections_active(&p, KBOX_PROT_HOSTNAME) ||
        kbox_protections_active(&p, KBOX_PROT_OVERLAY) ||
        strstr(p.probe.v[KBOX_PROT_OVERLAY].detail, "cannot take a copy") == NULL) {
      char line[4096];
      kbox_protections_summary(&p, line, sizeof(line));
      fprintf(stderr, "%s\n", line);
      _exit(14);
    }
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
  kt_rmrf(rootfs);
  free(rootfs);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) kt_skip_or_fail("user namespaces unavailable on this host");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "probe check %d failed", WEXITSTATUS(st));
}
