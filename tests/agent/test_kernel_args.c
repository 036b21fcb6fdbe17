/* The kernel-argument grammar (issue 11.1): what a client appends after a kbox kernelspec's argv
   is passed on, mapped (profile dirs) or refused with one message naming it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernel/kernel_args.h"

static bool never_run_option(const char *name) { return strcmp(name, "memory") == 0; }

/* Check argv (NULL-terminated); returns 0/-1, output args in spec->kernel.args, error in *msg. */
static int check(struct kbox_spec *spec, const char *const *argv, char **msg) {
  kbox_spec_init(spec);
  for (size_t i = 0; argv[i] != NULL; i++) kbox_strv_add(&spec->kernel.args, argv[i]);
  kbox_error_t err = NULL;
  int rc = kbox_kernel_args_check(spec, never_run_option, &err);
  *msg = err ? strdup(err->msg) : NULL;
  kbox_error_free(&err);
  return rc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_refused(const char *const *argv, const char *named) {
  struct kbox_spec s;
  char *msg = NULL;
  cr_assert_eq(check(&s, argv, &msg), -1, "accepted: %s", argv[0]);
  char quoted[256];
  snprintf(quoted, sizeof(quoted), "'%s'", named);
  cr_assert(msg != NULL && strstr(msg, quoted) != NULL, "message does not name %s: %s", quoted, msg);
  free(msg);
  kbox_spec_free(&s);
}

Test(kernel_args, flags_traits_and_aliases_pass) {
  struct kbox_spec s;
  char *msg = NULL;
  cr_assert_eq(check(&s, ARGS("--debug", "--InteractiveShell.cache_size=1234", "--HistoryManager.enabled", "False",
                              "--log-level", "DEBUG", "-c", "x = 1", "--matplotlib=inline"), &msg), 0, "%s", msg);
  const char *want[] = {"--debug", "--InteractiveShell.cache_size=1234", "--HistoryManager.enabled=False",
                        "--log-level=DEBUG", "-c", "x = 1", "--matplotlib=inline"};
  cr_assert_eq(s.kernel.args.n, sizeof(want) / sizeof(want[0]));
  for (size_t i = 0; i < s.kernel.args.n; i++) cr_assert_str_eq(s.kernel.args.v[i], want[i]);
  cr_assert_eq(s.sandbox.overlays.n, 0);
  kbox_spec_free(&s);
}

Test(kernel_args, profile_dir_is_mapped_at_its_real_path) {
  char dir[] = "/tmp/kbox-kargs-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  struct kbox_spec s;
  char *msg = NULL;
  char trait[300];
  snprintf(trait, sizeof(trait), "--HistoryManager.hist_file=%s/h.sqlite", dir);
  cr_assert_eq(check(&s, ARGS("--profile-dir", dir, trait), &msg), 0, "%s", msg);
  cr_assert_eq(s.sandbox.overlays.n, 1);
  cr_assert_str_eq(s.sandbox.overlays.v[0], dir);
  char want[300];
  snprintf(want, sizeof(want), "--profile-dir=%s", dir);
  cr_assert_str_eq(s.kernel.args.v[0], want);
  cr_assert_str_eq(s.kernel.args.v[1], trait); /* a path inside the mapped profile dir is visible */
  kbox_spec_free(&s);
  rmdir(dir);
}

Test(kernel_args, channels_keys_and_host_paths_refused) {
  expect_refused(ARGS("--ip", "0.0.0.0"), "--ip");
  expect_refused(ARGS("--transport=ipc"), "--transport=ipc");
  expect_refused(ARGS("--shell=5555"), "--shell=5555");
  expect_refused(ARGS("-f", "/tmp/k.json"), "-f");
  expect_refused(ARGS("--connection-file", "/tmp/k.json"), "--connection-file");
  expect_refused(ARGS("--Session.key=b'x'"), "--Session.key=b'x'");
  expect_refused(ARGS("--IPKernelApp.shell_port=1"), "--IPKernelApp.shell_port=1");
  expect_refused(ARGS("--ProfileDir.location=/tmp"), "--ProfileDir.location=/tmp");
  expect_refused(ARGS("--IPKernelApp.exec_files=['/etc/shadow']"), "--IPKernelApp.exec_files=['/etc/shadow']");
  expect_refused(ARGS("--config=/root/cfg.py"), "--config=/root/cfg.py");
  expect_refused(ARGS("--profile=../x/y"), "--profile=../x/y");
  expect_refused(ARGS("--help-all"), "--help-all");
  expect_refused(ARGS("--memory", "8G"), "--memory");
  expect_refused(ARGS("--frobnicate"), "--frobnicate");
  expect_refused(ARGS("positional"), "positional");
  expect_refused(ARGS("--profile-dir", "/no/such/dir"), "--profile-dir");
  expect_refused(ARGS("--log-level"), "--log-level");
}
