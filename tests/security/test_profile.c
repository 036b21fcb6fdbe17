/* Profile loading and validation (unit): every mistake is an error naming file, JSON path and
   problem; the shipped profiles load and compile; compiled filters behave as written. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "security/profile.h"
#include "security/seccomp.h"
#include "security/security.h"
#include "testlib.h"

/* Parse text, expect failure, and return the message (static buffer). */
static const char *parse_error(const char *text) {
  static char msg[1024];
  struct kbox_profile *p = NULL;
  kbox_error_t err = NULL;
  int rc = kbox_profile_parse("test.json", text, &p, &err);
  cr_assert_eq(rc, -1, "expected an error for: %s", text);
  cr_assert_null(p);
  snprintf(msg, sizeof(msg), "%s", err->msg);
  kbox_error_free(&err);
  return msg;
}

#define ASSERT_HAS(msg, needle) cr_assert(strstr((msg), (needle)) != NULL, "'%s' not in: %s", (needle), (msg))

#define SC(body) "{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [" body "]}}"

Test(profile, shipped_profiles_load_and_compile) {
  const char *names[] = {"default", "strict"};
  for (int i = 0; i < 2; i++) {
    char *path = NULL;
    kbox_error_t err = NULL;
    cr_assert_eq(kbox_profile_find(names[i], &path, &err), 0);
    char want[4096];
    snprintf(want, sizeof(want), "%s/profiles/%s.json", getenv("KBOX_SOURCE_ROOT"), names[i]);
    cr_assert_str_eq(path, want, "running from the build tree must use the source tree's profiles");
    struct kbox_profile *p = NULL;
    cr_assert_eq(kbox_profile_load(path, &p, &err), 0, "%s: %s", path, err ? err->msg : "");
    struct kbox_seccomp_compiled c;
    cr_assert_eq(kbox_seccomp_compile(&p->seccomp, &c, &err), 0, "%s", err ? err->msg : "");
    cr_assert_eq(c.n, 2, "allow-list + the TIOCSTI/TIOCLINUX overlay");
    cr_assert(p->limits.pids_set && p->limits.memory_set && p->limits.nofile_set);
    cr_assert_eq(p->caps_keep, 0);
    kbox_seccomp_compiled_free(&c);
    kbox_profile_free(p);
    free(path);
  }
}

Test(profile, unknown_top_level_key) {
  const char *m = parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"capabilites\": []}");
  ASSERT_HAS(m, "test.json");
  ASSERT_HAS(m, "capabilites: unknown key 'capabilites'");
}

Test(profile, unknown_syscall_names_its_path) {
  const char *m = parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                                 "{\"names\": [\"write\", \"close\", \"mout\"], \"action\": \"SCMP_ACT_ALLOW\"}"));
  ASSERT_HAS(m, "profile test.json: seccomp.syscalls[1].names[2]: unknown syscall 'mout'");
}

Test(profile, syscall_of_another_architecture_is_accepted) {
  struct kbox_profile *p = NULL;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_profile_parse("t", SC("{\"names\": [\"socketcall\", \"arm_fadvise64_64\"], \"action\": \"SCMP_ACT_ALLOW\"}"),
                                  &p, &err), 0, "%s", err ? err->msg : "");
  kbox_profile_free(p);
}

Test(profile, unknown_action) {
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALOW\"}")),
             "seccomp.syscalls[0].action: unknown action 'SCMP_ACT_ALOW'");
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"ERRNO\"}}"), "seccomp.defaultAction: unknown action");
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_NOTIFY\"}")), "not supported by kbox");
}

Test(profile, errno_only_with_errno_action) {
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"errnoRet\": 1}")),
             "seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO");
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 5000}")),
             "seccomp.syscalls[0].errnoRet: must be an errno number");
}

Test(profile, bad_arguments) {
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 7, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]}")),
             "seccomp.syscalls[0].args[0].index: argument index 7 is out of range");
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"}, {\"names\": [\"write\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_EQUAL\"}]}")),
             "seccomp.syscalls[1].args[0].op: unknown operator 'SCMP_CMP_EQUAL'");
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 0, \"value\": -1, \"op\": \"SCMP_CMP_EQ\"}]}")),
             "seccomp.syscalls[0].args[0].value: must be a non-negative integer");
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 0, \"valu\": 1, \"op\": \"SCMP_CMP_EQ\"}]}")),
             "seccomp.syscalls[0].args[0].valu: unknown key 'valu'");
  ASSERT_HAS(parse_error(SC("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}, {\"index\": 0, \"value\": 2, \"op\": \"SCMP_CMP_EQ\"}]}")),
             "seccomp.syscalls[0].args[1]: a second condition on argument 0");
  ASSERT_HAS(parse_error(SC("{\"names\": [], \"action\": \"SCMP_ACT_ALLOW\"}")), "seccomp.syscalls[0].names: must be a non-empty array");
}

Test(profile, limits_and_capabilities) {
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"limits\": {\"memory\": \"lots\"}}"),
             "limits.memory");
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"limits\": {\"pids\": 0}}"),
             "limits.pids: must be an integer from 1");
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"limits\": {\"cpu\": 1}}"),
             "limits.cpu: unknown key 'cpu'");
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"capabilities\": [\"CAP_SYS_ADMN\"]}"),
             "capabilities[0]: unknown capability 'CAP_SYS_ADMN'");
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"capabilities\": [\"CAP_NET_RAW\"]}"),
             "capabilities[0]: keeping CAP_NET_RAW is not supported");
  struct kbox_profile *p = NULL;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_profile_parse("t", "{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"limits\": {\"memory\": \"256M\", \"cpus\": 0.5, \"nofile\": 64}}", &p, &err), 0);
  cr_assert(p->limits.memory_set && p->limits.memory_bytes == 256ULL << 20);
  cr_assert(p->limits.cpus_set && p->limits.cpus == 0.5);
  cr_assert(p->limits.nofile_set && p->limits.nofile == 64 && !p->limits.pids_set);
  kbox_profile_free(p);
}

/* "warm": false forbids warm starts (docs/warm.md); absent means allowed; anything else is refused. */
Test(profile, warm_switch) {
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"warm\": \"no\"}"),
             "warm: must be true or false");
  const char *texts[] = {"{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"warm\": false}",
                         "{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"warm\": true}",
                         "{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}}"};
  for (int i = 0; i < 3; i++) {
    struct kbox_profile *p = NULL;
    kbox_error_t err = NULL;
    cr_assert_eq(kbox_profile_parse("t", texts[i], &p, &err), 0, "%s", texts[i]);
    cr_assert_eq(p->no_warm, i == 0, "%s", texts[i]);
    kbox_profile_free(p);
  }
}

Test(profile, json_syntax_duplicates_and_missing_sections) {
  ASSERT_HAS(parse_error("{\"seccomp\": {"), "line 1");
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}, \"seccomp\": {}}"), "duplicate");
  ASSERT_HAS(parse_error("{\"limits\": {}}"), "seccomp: missing");
  ASSERT_HAS(parse_error("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ERRNO\", \"architectures\": [\"SCMP_ARCH_Z80\"]}}"),
             "seccomp.architectures[0]: unknown architecture");
}

Test(profile, find_by_name_and_path) {
  char *path = NULL;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_profile_find("./mine.json", &path, &err), 0);
  cr_assert_str_eq(path, "./mine.json");
  free(path);
  cr_assert_eq(kbox_profile_find("nosuchprofile", &path, &err), -1);
  ASSERT_HAS(err->msg, "no profile named 'nosuchprofile'");
  kbox_error_free(&err);
  cr_assert_eq(kbox_profile_find("bad name!", &path, &err), -1);
  kbox_error_free(&err);
}

/* Leave the filtered child through the raw exit_group syscall, never through _exit(): in the
   sanitizer build the compiler puts __asan_handle_no_return() before every call to a noreturn
   function, and that calls sigaltstack(); the filter under test refuses it, ASan's CHECK then
   needs mmap and futex (refused too) and the child spins forever while the test waits for it. */
static void filtered_exit(int code) {
  for (;;) syscall(SYS_exit_group, code);
}

/* Child side of run_filtered: dies with its parent (a timed-out test leaves no spinning orphan),
   installs the filter, runs probe() and exits with its result; 90 when the filter did not install. */
static void filtered_child(const struct kbox_seccomp_compiled *c, int (*probe)(void)) {
  kbox_error_t err = NULL;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
      kbox_seccomp_install(c, &err) < 0)
    filtered_exit(90);
  filtered_exit(probe());
}

/* In a child: install the compiled filter of text and run probe(); returns probe's exit code. */
static int run_filtered(const char *text, int (*probe)(void)) {
  struct kbox_profile *p = NULL;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_profile_parse("t", text, &p, &err), 0, "%s", err ? err->msg : "");
  struct kbox_seccomp_compiled c;
  cr_assert_eq(kbox_seccomp_compile(&p->seccomp, &c, &err), 0, "%s", err ? err->msg : "");
  pid_t pid = fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) filtered_child(&c, probe);
  int st = 0;
  waitpid(pid, &st, 0);
  kbox_seccomp_compiled_free(&c);
  kbox_profile_free(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* 10: getppid allowed; 20+errno of a refused getpgid... see the profile in the test. */
static int probe_errno(void) {
  if (syscall(SYS_getppid) < 0) return 1;
  if (syscall(SYS_getpgid, 0) >= 0) return 2;
  if (errno != ENOTSUP) return 3;
  if (syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0) < 0) return 4;
  if (syscall(SYS_socket, AF_INET, SOCK_STREAM, 0) >= 0 || errno != ENOTSUP) return 5;
  if (syscall(SYS_ioctl, 0, TIOCSTI, "x") >= 0 || errno != EACCES) return 6;
  if (syscall(SYS_ioctl, 0, (1UL << 32) | TIOCSTI, "x") >= 0 || errno != EACCES) return 7;
  if (syscall(SYS_ioctl, -1, FIONREAD, NULL) >= 0 || errno != EBADF) return 8; /* reached the kernel */
  return 0;
}

Test(profile, compiled_filter_behaves_as_written) {
  const char *text =
      "{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 95, \"syscalls\": ["
      "{\"names\": [\"exit\", \"exit_group\", \"getppid\", \"ioctl\", \"write\"], \"action\": \"SCMP_ACT_ALLOW\"},"
      "{\"names\": [\"socket\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]},"
      "{\"names\": [\"ioctl\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 13, \"args\": [{\"index\": 1, \"value\": 4294967295, \"valueTwo\": 21522, \"op\": \"SCMP_CMP_MASKED_EQ\"}]}"
      "]}}";
  cr_assert_eq(run_filtered(text, probe_errno), 0);
}

static int probe_kill(void) {
  syscall(SYS_getpgid, 0);
  return 0;
}

Test(profile, kill_process_default_kills) {
  const char *text = "{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_KILL_PROCESS\", \"syscalls\": ["
                     "{\"names\": [\"exit\", \"exit_group\"], \"action\": \"SCMP_ACT_ALLOW\"}]}}";
  cr_assert_eq(run_filtered(text, probe_kill), 128 + SIGSYS);
}
