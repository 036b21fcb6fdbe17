/* `kbox entrypoint` configuration: variables, their EG_ spellings, launcher options, and messages
   that name the variable at fault. Each criterion test runs in its own process, so setenv is safe. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote/config.h"
#include "testlib.h"

static const char *const vars[] = {"KERNEL_ID", "KERNEL_LANGUAGE", "RESPONSE_ADDRESS", "EG_RESPONSE_ADDRESS",
  "PUBLIC_KEY", "EG_PUBLIC_KEY", "PORT_RANGE", "EG_PORT_RANGE", "MIN_PORT_RANGE_SIZE", "EG_MIN_PORT_RANGE_SIZE",
  "MAX_PORT_RANGE_RETRIES", "EG_MAX_PORT_RANGE_RETRIES", "KERNEL_SHELL_PORT", "KERNEL_IOPUB_PORT", "KERNEL_STDIN_PORT",
  "KERNEL_CONTROL_PORT", "KERNEL_HB_PORT", "KERNEL_KEY", "KERNEL_KEY_FILE", "KERNEL_IDLE_TIMEOUT",
  "KERNEL_WORKING_DIR", "KERNEL_USERNAME", "KBOX_REQUIRE", "KBOX_STATUS_FILE", "KBOX_ROOTFS", "KBOX_PROFILE", "KBOX_EG_RESPOND", NULL};

static void clean_env(void) {
  for (int i = 0; vars[i]; i++) unsetenv(vars[i]);
}

TestSuite(config, .init = clean_env);

/* Load env + args and finish; returns the error message (static) or NULL. */
static const char *load(struct kbox_remote_config *c, int argc, char **argv) {
  static char msg[1024];
  kbox_error_t err = NULL;
  bool help = false;
  kbox_remote_config_init(c);
  if (kbox_remote_config_from_env(c, &err) < 0 || kbox_remote_config_parse_args(c, argc, argv, &help, &err) < 0 ||
      kbox_remote_config_finish(c, &err) < 0) {
    snprintf(msg, sizeof(msg), "%s", err->msg);
    kbox_error_free(&err);
    return msg;
  }
  return NULL;
}

static char *noargs[] = {"entrypoint", NULL};

Test(config, eg_mode_from_environment) {
  setenv("KERNEL_ID", "5e2b7c1a-0000-4000-8000-00000000abcd", 1);
  setenv("EG_RESPONSE_ADDRESS", "10.1.2.3:8877", 1);
  setenv("EG_PUBLIC_KEY", "AAAA", 1);
  setenv("EG_PORT_RANGE", "40000..41000", 1);
  setenv("KERNEL_USERNAME", "alice", 1);
  struct kbox_remote_config c;
  const char *e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  cr_assert_eq(c.mode, KBOX_REMOTE_EG);
  cr_assert_str_eq(c.response_address, "10.1.2.3:8877");
  cr_assert_str_eq(c.public_key, "AAAA");
  cr_assert_eq(c.port_lo, 40000);
  cr_assert_eq(c.port_hi, 41000);
  cr_assert_str_eq(c.language, "python");
  cr_assert_str_eq(c.username, "alice");
  cr_assert_eq(c.max_retries, 5);
  cr_assert_str_eq(c.status_file, "/tmp/kbox-status.json");
  cr_assert_not(c.respond_when_ready, "the connection info goes to EG once the kernel listens by default");
  kbox_remote_config_free(&c);
}

Test(config, eg_respond_point) {
  setenv("KERNEL_ID", "k", 1);
  setenv("RESPONSE_ADDRESS", "gw:8877", 1);
  setenv("PUBLIC_KEY", "AAAA", 1);
  struct kbox_remote_config c;
  setenv("KBOX_EG_RESPOND", "ready", 1);
  const char *e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  cr_assert(c.respond_when_ready);
  kbox_remote_config_free(&c);
  setenv("KBOX_EG_RESPOND", "listening", 1);
  e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  cr_assert_not(c.respond_when_ready);
  kbox_remote_config_free(&c);
  setenv("KBOX_EG_RESPOND", "soon", 1);
  e = load(&c, 1, noargs);
  cr_assert_not_null(e);
  cr_assert(strstr(e, "KBOX_EG_RESPOND 'soon'") != NULL && strstr(e, "'listening' or 'ready'") != NULL, "%s", e);
  kbox_remote_config_free(&c);
}

Test(config, primary_names_win_and_options_win_over_env) {
  setenv("KERNEL_ID", "from-env", 1);
  setenv("RESPONSE_ADDRESS", "a:1", 1);
  setenv("EG_RESPONSE_ADDRESS", "b:2", 1);
  setenv("PUBLIC_KEY", "AAAA", 1);
  char *argv[] = {"entrypoint", "--RemoteProcessProxy.kernel-id", "from-cli", "--port-range=5000..7000",
                  "--RemoteProcessProxy.spark-context-initialization-mode", "none", NULL};
  struct kbox_remote_config c;
  const char *e = load(&c, 6, argv);
  cr_assert_null(e, "%s", e);
  cr_assert_str_eq(c.kernel_id, "from-cli");
  cr_assert_str_eq(c.response_address, "a:1");
  cr_assert_eq(c.port_lo, 5000);
  kbox_remote_config_free(&c);
  char *argv2[] = {"entrypoint", "--kernel-id", "k2", "--response-address", "c:3", "--public-key", "BBBB", NULL};
  clean_env();
  e = load(&c, 7, argv2);
  cr_assert_null(e, "%s", e);
  cr_assert_str_eq(c.response_address, "c:3");
  cr_assert_str_eq(c.public_key, "BBBB");
  kbox_remote_config_free(&c);
}

Test(config, eg_mode_missing_variables_are_named) {
  struct kbox_remote_config c;
  setenv("RESPONSE_ADDRESS", "gw:8877", 1);
  setenv("PUBLIC_KEY", "AAAA", 1);
  const char *e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_ID is not set"), "%s", e);
  kbox_remote_config_free(&c);
  setenv("KERNEL_ID", "k", 1);
  unsetenv("PUBLIC_KEY");
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "PUBLIC_KEY is not set"), "%s", e);
  kbox_remote_config_free(&c);
  setenv("PUBLIC_KEY", "AAAA", 1);
  unsetenv("RESPONSE_ADDRESS");
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "RESPONSE_ADDRESS is not set"), "%s", e);
  kbox_remote_config_free(&c);
  clean_env();
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "RESPONSE_ADDRESS") && strstr(e, "KERNEL_SHELL_PORT"), "%s", e);
  kbox_remote_config_free(&c);
}

Test(config, port_range_checks) {
  struct kbox_remote_config c;
  setenv("KERNEL_ID", "k", 1);
  setenv("RESPONSE_ADDRESS", "gw:8877", 1);
  setenv("PUBLIC_KEY", "AAAA", 1);
  setenv("PORT_RANGE", "40000..40100", 1);
  const char *e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "PORT_RANGE '40000..40100' holds 100 ports") && strstr(e, "MIN_PORT_RANGE_SIZE=1000"), "%s", e);
  kbox_remote_config_free(&c);
  setenv("EG_MIN_PORT_RANGE_SIZE", "100", 1);
  e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  kbox_remote_config_free(&c);
  setenv("MIN_PORT_RANGE_SIZE", "0", 1);
  setenv("PORT_RANGE", "40000..40003", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "PORT_RANGE"), "six ports are the minimum: %s", e);
  kbox_remote_config_free(&c);
  setenv("PORT_RANGE", "0..0", 1);
  e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  cr_assert_eq(c.port_hi, 0);
  kbox_remote_config_free(&c);
  setenv("PORT_RANGE", "9..x", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "PORT_RANGE"), "%s", e);
  kbox_remote_config_free(&c);
  unsetenv("PORT_RANGE");
  setenv("MAX_PORT_RANGE_RETRIES", "0", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "MAX_PORT_RANGE_RETRIES"), "%s", e);
  kbox_remote_config_free(&c);
}

Test(config, controller_mode_ports_and_key_file) {
  struct kbox_remote_config c;
  setenv("KERNEL_ID", "kernel-1", 1);
  setenv("KERNEL_SHELL_PORT", "6001", 1);
  setenv("KERNEL_HB_PORT", "6005", 1);
  char *dir = kt_tmpdir();
  char path[4096];
  snprintf(path, sizeof(path), "%s/key", dir);
  kt_write_file(path, "s3cret-key\n");
  setenv("KERNEL_KEY_FILE", path, 1);
  setenv("KERNEL_IDLE_TIMEOUT", "30", 1);
  setenv("KERNEL_WORKING_DIR", dir, 1);
  const char *e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  cr_assert_eq(c.mode, KBOX_REMOTE_CONTROLLER);
  cr_assert_eq(c.ports[KBOX_PORT_SHELL], 6001);
  cr_assert_eq(c.ports[KBOX_PORT_IOPUB], 52318);
  cr_assert_eq(c.ports[KBOX_PORT_STDIN], 52321);
  cr_assert_eq(c.ports[KBOX_PORT_CONTROL], 52320);
  cr_assert_eq(c.ports[KBOX_PORT_HB], 6005);
  cr_assert_str_eq(c.key, "s3cret-key");
  cr_assert(!c.key_is_kernel_id);
  cr_assert_eq(c.idle_timeout_s, 30);
  cr_assert_str_eq(c.working_dir, dir);
  kbox_remote_config_free(&c);
  setenv("KERNEL_KEY", "direct", 1);
  e = load(&c, 1, noargs);
  cr_assert_str_eq(c.key, "direct");
  kbox_remote_config_free(&c);
  unsetenv("KERNEL_KEY");
  unsetenv("KERNEL_KEY_FILE");
  e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  cr_assert_str_eq(c.key, "kernel-1");
  cr_assert(c.key_is_kernel_id);
  kbox_remote_config_free(&c);
  kt_rmrf(dir);
  free(dir);
}

Test(config, controller_mode_errors_name_the_variable) {
  struct kbox_remote_config c;
  setenv("KERNEL_ID", "kernel-1", 1);
  setenv("KERNEL_SHELL_PORT", "70000", 1);
  const char *e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_SHELL_PORT"), "%s", e);
  kbox_remote_config_free(&c);
  setenv("KERNEL_SHELL_PORT", "52318", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_SHELL_PORT") && strstr(e, "KERNEL_IOPUB_PORT"), "%s", e);
  kbox_remote_config_free(&c);
  unsetenv("KERNEL_SHELL_PORT");
  setenv("KERNEL_HB_PORT", "6000", 1);
  setenv("KERNEL_KEY_FILE", "/nonexistent/key", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_KEY_FILE"), "%s", e);
  kbox_remote_config_free(&c);
  unsetenv("KERNEL_KEY_FILE");
  setenv("KERNEL_WORKING_DIR", "relative/dir", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_WORKING_DIR"), "%s", e);
  kbox_remote_config_free(&c);
  unsetenv("KERNEL_WORKING_DIR");
  setenv("KERNEL_IDLE_TIMEOUT", "soon", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_IDLE_TIMEOUT"), "%s", e);
  kbox_remote_config_free(&c);
  unsetenv("KERNEL_IDLE_TIMEOUT");
  setenv("KERNEL_LANGUAGE", "scala", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_LANGUAGE"), "%s", e);
  kbox_remote_config_free(&c);
  unsetenv("KERNEL_LANGUAGE");
  setenv("KERNEL_ID", "bad id/with slash", 1);
  e = load(&c, 1, noargs);
  cr_assert(e && strstr(e, "KERNEL_ID"), "%s", e);
  kbox_remote_config_free(&c);
  char *argv[] = {"entrypoint", "--kernel-id", "ok", "stray", NULL};
  e = load(&c, 4, argv);
  cr_assert(e && strstr(e, "stray"), "%s", e);
  kbox_remote_config_free(&c);
  char *argv2[] = {"entrypoint", "--no-such-option", NULL};
  e = load(&c, 2, argv2);
  cr_assert(e && strstr(e, "--no-such-option"), "%s", e);
  kbox_remote_config_free(&c);
}
