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
  cr_assert(c.respond_when_ready, "the connection info goes to EG once the kernel answered, by default");
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

/* One configuration and what loading it must say: each case starts from a clean environment. */
struct config_case {
  const char *name;
  const char *env[8];  /* NAME=VALUE, NULL-terminated */
  const char *args[4]; /* after argv[0], NULL-terminated */
  const char *want[2]; /* substrings the error must hold; {NULL}: it must load */
};

#define EG_BASE "KERNEL_ID=k", "RESPONSE_ADDRESS=gw:8877", "PUBLIC_KEY=AAAA"
#define LOW_MIN "EG_MIN_PORT_RANGE_SIZE=100", "MIN_PORT_RANGE_SIZE=0"

static const struct config_case cases[] = {
  {"no kernel id", {"RESPONSE_ADDRESS=gw:8877", "PUBLIC_KEY=AAAA"}, {NULL}, {"KERNEL_ID is not set"}},
  {"no public key", {"RESPONSE_ADDRESS=gw:8877", "KERNEL_ID=k"}, {NULL}, {"PUBLIC_KEY is not set"}},
  {"no response address", {"PUBLIC_KEY=AAAA", "KERNEL_ID=k"}, {NULL}, {"RESPONSE_ADDRESS is not set"}},
  {"nothing set", {NULL}, {NULL}, {"RESPONSE_ADDRESS", "KERNEL_SHELL_PORT"}},
  {"port range too small", {EG_BASE, "PORT_RANGE=40000..40100"}, {NULL},
   {"PORT_RANGE '40000..40100' holds 100 ports", "MIN_PORT_RANGE_SIZE=1000"}},
  {"EG_ minimum size", {EG_BASE, "PORT_RANGE=40000..40100", "EG_MIN_PORT_RANGE_SIZE=100"}, {NULL}, {NULL}},
  {"six ports are the minimum", {EG_BASE, LOW_MIN, "PORT_RANGE=40000..40003"}, {NULL}, {"PORT_RANGE"}},
  {"any port", {EG_BASE, LOW_MIN, "PORT_RANGE=0..0"}, {NULL}, {NULL}},
  {"port range syntax", {EG_BASE, LOW_MIN, "PORT_RANGE=9..x"}, {NULL}, {"PORT_RANGE"}},
  {"no retries", {EG_BASE, LOW_MIN, "MAX_PORT_RANGE_RETRIES=0"}, {NULL}, {"MAX_PORT_RANGE_RETRIES"}},
  {"port out of range", {"KERNEL_ID=kernel-1", "KERNEL_SHELL_PORT=70000"}, {NULL}, {"KERNEL_SHELL_PORT"}},
  {"port clash", {"KERNEL_ID=kernel-1", "KERNEL_SHELL_PORT=52318"}, {NULL}, {"KERNEL_SHELL_PORT", "KERNEL_IOPUB_PORT"}},
  {"missing key file", {"KERNEL_ID=kernel-1", "KERNEL_HB_PORT=6000", "KERNEL_KEY_FILE=/nonexistent/key"}, {NULL},
   {"KERNEL_KEY_FILE"}},
  {"relative working dir", {"KERNEL_ID=kernel-1", "KERNEL_HB_PORT=6000", "KERNEL_WORKING_DIR=relative/dir"}, {NULL},
   {"KERNEL_WORKING_DIR"}},
  {"idle timeout syntax", {"KERNEL_ID=kernel-1", "KERNEL_HB_PORT=6000", "KERNEL_IDLE_TIMEOUT=soon"}, {NULL},
   {"KERNEL_IDLE_TIMEOUT"}},
  {"language", {"KERNEL_ID=kernel-1", "KERNEL_HB_PORT=6000", "KERNEL_LANGUAGE=scala"}, {NULL}, {"KERNEL_LANGUAGE"}},
  {"kernel id syntax", {"KERNEL_ID=bad id/with slash", "KERNEL_HB_PORT=6000"}, {NULL}, {"KERNEL_ID"}},
  {"stray argument", {"KERNEL_ID=kernel-1", "KERNEL_HB_PORT=6000"}, {"--kernel-id", "ok", "stray"}, {"stray"}},
  {"unknown option", {"KERNEL_ID=kernel-1", "KERNEL_HB_PORT=6000"}, {"--no-such-option"}, {"--no-such-option"}},
};

/* Set NAME=VALUE in the environment. */
static void put_env(const char *assignment) {
  char name[64];
  size_t n = strcspn(assignment, "=");
  snprintf(name, sizeof(name), "%.*s", (int)n, assignment);
  setenv(name, assignment + n + 1, 1);
}

Test(config, errors_name_the_variable_at_fault) {
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const struct config_case *t = &cases[i];
    clean_env();
    for (size_t j = 0; t->env[j] != NULL; j++) put_env(t->env[j]);
    char *argv[6] = {"entrypoint"};
    int argc = 1;
    for (size_t j = 0; t->args[j] != NULL; j++) argv[argc++] = (char *)t->args[j];
    struct kbox_remote_config c;
    const char *e = load(&c, argc, argv);
    if (t->want[0] == NULL) cr_assert_null(e, "%s: %s", t->name, e);
    for (size_t j = 0; j < 2 && t->want[j] != NULL; j++)
      cr_assert(e != NULL && strstr(e, t->want[j]) != NULL, "%s: wanted '%s' in: %s", t->name, t->want[j], e);
    kbox_remote_config_free(&c);
  }
}

Test(config, port_range_0_0_means_any_port) {
  clean_env();
  static const char *const env[] = {EG_BASE, LOW_MIN, "PORT_RANGE=0..0", NULL};
  for (size_t j = 0; env[j] != NULL; j++) put_env(env[j]);
  struct kbox_remote_config c;
  const char *e = load(&c, 1, noargs);
  cr_assert_null(e, "%s", e);
  cr_assert_eq(c.port_lo, 0);
  cr_assert_eq(c.port_hi, 0);
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
