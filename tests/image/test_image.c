/* Suite 'image': the default image and the kbox layer, checked from inside `kbox run` sandboxes
   (a real ipykernel started by jupyter_client inside the sandbox runs the startup path), and the
   image builder's failure handling. The image itself is built once by CI: kbox image build default. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

/* Under the sanitizer build, LeakSanitizer reports a 48-byte block that criterion's own runner
   allocates and never frees when this suite's tests run together; suppress only that library's
   leaks (kbox runs as a separate process and stays fully checked). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

/* Directory the default image lives in for this test run (same rule as kbox). */
static void images_dir(char *out, size_t n) {
  const char *env = getenv("KBOX_IMAGES_DIR");
  if (env != NULL && env[0] == '/') snprintf(out, n, "%s", env);
  else snprintf(out, n, "/var/lib/kbox/rootfs");
}

/* Skip (or fail under KBOX_MUST_WORK=1) unless the default image is built and sandboxes can start. */
static void need_image(void) {
  if (!kt_is_root() && !kt_userns_works(-1)) kt_skip_or_fail("no user namespaces here");
  char dir[PATH_MAX - 64], manifest[PATH_MAX];
  images_dir(dir, sizeof(dir));
  snprintf(manifest, sizeof(manifest), "%s/default/etc/kbox/manifest.json", dir);
  if (access(manifest, R_OK) != 0)
    kt_skip_or_fail("the default image is not built (run: kbox image build default)");
}

/* kbox run [extra...] -- python3 kernel_check.py CHECK, on the default image. */
static void kernel_check(const char *check, const char *extra1, const char *extra2, struct kt_result *r) {
  char bind[PATH_MAX];
  snprintf(bind, sizeof(bind), "%s/tests/image:/kbox-tests:ro", getenv("KBOX_SOURCE_ROOT"));
  char *argv[16];
  int n = 0;
  argv[n++] = (char *)kt_kbox();
  argv[n++] = "run";
  argv[n++] = "--memory";
  argv[n++] = "2G";
  argv[n++] = "--bind";
  argv[n++] = bind;
  if (extra1 != NULL) argv[n++] = (char *)extra1;
  if (extra2 != NULL) argv[n++] = (char *)extra2;
  argv[n++] = "--";
  argv[n++] = "python3";
  argv[n++] = "/kbox-tests/kernel_check.py";
  argv[n++] = (char *)check;
  argv[n] = NULL;
  cr_assert_eq(kt_run(argv, NULL, -1, 300, r), 0, "running kbox");
}

static void assert_check_ok(const char *check, struct kt_result *r) {
  char marker[64];
  snprintf(marker, sizeof(marker), "CHECK %s: ok", check);
  cr_assert(r->exit_code == 0 && strstr(r->out, marker) != NULL,
            "check %s failed (exit %d)\nstdout:\n%s\nstderr:\n%s", check, r->exit_code, r->out, r->err);
}

Test(image, listed_packages_import_with_expected_versions, .timeout = 300) {
  need_image();
  struct kt_result r;
  kernel_check("imports", NULL, NULL, &r);
  assert_check_ok("imports", &r);
  kt_result_free(&r);
}

Test(image, read_df_reads_utf8_gbk_tsv_xlsx, .timeout = 300) {
  need_image();
  struct kt_result r;
  kernel_check("read_df", NULL, NULL, &r);
  assert_check_ok("read_df", &r);
  kt_result_free(&r);
}

Test(image, chinese_plot_is_png_without_font_warnings, .timeout = 300) {
  need_image();
  struct kt_result r;
  kernel_check("plot", NULL, NULL, &r);
  assert_check_ok("plot", &r);
  /* The kernel's own stderr (logging from matplotlib) reaches kbox's stderr. */
  cr_assert_null(strstr(r.err, "findfont"), "findfont warning:\n%s", r.err);
  cr_assert_null(strstr(r.err, "missing from font"), "missing glyphs:\n%s", r.err);
  kt_result_free(&r);
}

Test(image, debugger_built_on_first_debug_request, .timeout = 300) {
  need_image();
  struct kt_result r;
  kernel_check("debugger", NULL, NULL, &r);
  assert_check_ok("debugger", &r);
  kt_result_free(&r);
}

Test(image, pandas_display_options_in_effect, .timeout = 300) {
  need_image();
  struct kt_result r;
  kernel_check("pandas_options", NULL, NULL, &r);
  assert_check_ok("pandas_options", &r);
  kt_result_free(&r);
}

Test(image, startup_dir_scripts_run_after_builtins_in_order, .timeout = 300) {
  need_image();
  char *dir = kt_tmpdir();
  kt_write_in(dir, "b.py", "USER_STARTUP_ORDER += ',b'\n");
  kt_write_in(dir, "a.py", "USER_STARTUP = 'ran'\n"
                        "USER_STARTUP_ORDER = 'after-builtins' if callable(globals().get('read_df')) else 'before'\n");
  kt_write_in(dir, "notes.txt", "raise SystemExit('not a startup script')\n");
  struct kt_result r;
  kernel_check("startup_dir", "--startup-dir", dir, &r);
  assert_check_ok("startup_dir", &r);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

Test(image, first_plot_uses_prebuilt_font_caches, .timeout = 300) {
  need_image();
  struct kt_result r;
  kernel_check("font_cache", NULL, NULL, &r);
  assert_check_ok("font_cache", &r);
  cr_assert_null(strstr(r.err, "building the font cache"), "font cache rebuilt:\n%s", r.err);
  kt_result_free(&r);
}

/* The startup scripts run after the kernel answered kernel_info; the first cell still sees them all. */
Test(image, deferred_startup_scripts_complete_before_first_cell, .timeout = 300) {
  need_image();
  struct kt_result r;
  kernel_check("deferred_startup", NULL, NULL, &r);
  assert_check_ok("deferred_startup", &r);
  kt_result_free(&r);
}

Test(image, startup_dir_is_read_only_inside, .timeout = 120) {
  need_image();
  char *dir = kt_tmpdir();
  chmod(dir, 0777); /* only the read-only mount may stop the write */
  char *argv[] = {(char *)kt_kbox(), "run", "--startup-dir", dir, "--user", "0:0", "--",
                  "sh", "-c", "touch /etc/kbox/user-startup/x 2>&1; echo rc=$?", NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, -1, 60, &r), 0);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  const char *rc = kt_field(r.out, "rc");
  cr_assert(rc != NULL && strcmp(rc, "0") != 0, "writing into the startup dir succeeded inside: %s", r.out);
  char p[PATH_MAX];
  snprintf(p, sizeof(p), "%s/x", dir);
  cr_assert_neq(access(p, F_OK), 0, "file appeared in the host's startup dir");
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

Test(image, missing_image_names_the_build_command) {
  char *dir = kt_tmpdir();
  char envv[PATH_MAX + 32];
  snprintf(envv, sizeof(envv), "KBOX_IMAGES_DIR=%s", dir);
  char *env[] = {envv, NULL};
  char *argv[] = {(char *)kt_kbox(), "run", "--", "true", NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, 30, &r), 0);
  cr_assert_eq(r.exit_code, 125, "exit %d, stderr: %s", r.exit_code, r.err);
  cr_assert_not_null(strstr(r.err, "kbox image build default"), "no build command in: %s", r.err);
  cr_assert_not_null(strstr(r.err, dir), "the missing path is not named: %s", r.err);
  kt_result_free(&r);
  char *argv2[] = {(char *)kt_kbox(), "run", "--image", "nosuch", "--", "true", NULL};
  cr_assert_eq(kt_run(argv2, env, -1, 30, &r), 0);
  cr_assert_not_null(strstr(r.err, "kbox image build nosuch"), "stderr: %s", r.err);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

Test(image, inspect_prints_manifest_and_rebuild_is_a_no_op, .timeout = 120) {
  need_image();
  char *argv[] = {(char *)kt_kbox(), "image", "inspect", "default", NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, -1, 60, &r), 0);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  for (const char *want[] = {"recipe hash:", "built:", "python3-pandas", "python3-matplotlib", "fonts-noto-cjk", NULL},
       **w = want; *w != NULL; w++)
    cr_assert_not_null(strstr(r.out, *w), "'%s' missing from inspect:\n%s", *w, r.out);
  kt_result_free(&r);
  char *check[] = {(char *)kt_kbox(), "image", "build", "default", "--check", NULL};
  cr_assert_eq(kt_run(check, NULL, -1, 60, &r), 0);
  if (r.exit_code == 3) kt_skip_or_fail("the default image is outdated (run: kbox image build default)");
  kt_result_free(&r);
  char *argv2[] = {(char *)kt_kbox(), "image", "build", "default", NULL};
  cr_assert_eq(kt_run(argv2, NULL, -1, 60, &r), 0);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  cr_assert_not_null(strstr(r.err, "up to date"), "rebuild of an unchanged recipe did work: %s", r.err);
  kt_result_free(&r);
}

/* A build that fails (unknown package) keeps the previous image and names the package. */
Test(image, failed_build_keeps_previous_image_and_names_package, .timeout = 600) {
  if (!kt_is_root()) kt_skip_or_fail("building an image needs root (mmdebstrap --mode=root)");
  if (system("command -v mmdebstrap >/dev/null") != 0)
    kt_skip_or_fail("mmdebstrap is not installed (run: kbox image deps)");
  char *dir = kt_tmpdir();
  char prev[PATH_MAX - 64];
  snprintf(prev, sizeof(prev), "%s/victim", dir);
  cr_assert_eq(mkdir(prev, 0755), 0);
  kt_write_in(prev, "previous-image", "still here\n");
  char envv[PATH_MAX + 32];
  snprintf(envv, sizeof(envv), "KBOX_IMAGES_DIR=%s", dir);
  char *env[] = {envv, NULL};
  char *argv[] = {(char *)kt_kbox(), "image", "build", "victim", "--add", "kbox-no-such-package-4711", NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, 580, &r), 0);
  cr_assert_neq(r.exit_code, 0, "the build succeeded?\n%s", r.err);
  if (strstr(r.err, "could not be reached") != NULL) kt_skip_or_fail("the apt mirror is not reachable");
  cr_assert_not_null(strstr(r.err, "unknown package(s) in trixie: kbox-no-such-package-4711"),
                     "the failing package is not named:\n%s", r.err);
  cr_assert_not_null(strstr(r.err, "previous image"), "no word about the previous image:\n%s", r.err);
  char p[PATH_MAX];
  snprintf(p, sizeof(p), "%s/previous-image", prev);
  cr_assert_eq(access(p, F_OK), 0, "the previous image was touched");
  char cmd[PATH_MAX + 64];
  snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -v -e '^victim$' -e '^\\.victim\\.lock$'", dir);
  FILE *ls = popen(cmd, "r");
  char left[256] = "";
  cr_assert_null(fgets(left, sizeof(left), ls), "half-built leftovers in the images dir: %s", left);
  pclose(ls);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
}

/* The real thing: kbox's kernel mode (broker + ipykernel in the sandbox) on the default image,
   driven by a host-side jupyter_client; the kbox layer's startup must be in effect there too. */
Test(image, kernel_mode_on_default_image_has_helpers_and_png_plots, .timeout = 300) {
  need_image();
  char script[PATH_MAX];
  snprintf(script, sizeof(script), "%s/tests/image/broker_check.py", getenv("KBOX_SOURCE_ROOT"));
  const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  char *argv[] = {(char *)py, script, (char *)kt_kbox(), NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, -1, 280, &r), 0);
  if (r.exit_code == 77) kt_skip_or_fail("jupyter_client is not installed on the host (tools/setup.sh installs it)");
  cr_assert(r.exit_code == 0 && strstr(r.out, "BROKER CHECK: ok") != NULL,
            "kernel mode check failed (exit %d)\nstdout:\n%s\nstderr:\n%s", r.exit_code, r.out, r.err);
  kt_result_free(&r);
}
