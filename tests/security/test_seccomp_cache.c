/* The compiled-filter cache: a cached filter blocks exactly what a fresh one does, a cache file
   that is not the caller's own (foreign owner, group/other writable, torn) is never loaded, and a
   cache that cannot be written does not break a run. Checked with the escape battery inside. The
   profile records next to the filters (a profile's limits, README "Start-up cost") follow the
   same trust rules, checked through the limits a run reports. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

/* Run the battery (host rootfs, battery bound in) with the cache at dir; returns the result. */
static void run_battery(const char *dir, struct kt_result *r) {
  char bind[4200], env[4200];
  snprintf(bind, sizeof(bind), "%s/tests/security/escape:/escape:ro", getenv("KBOX_BUILD_ROOT"));
  snprintf(env, sizeof(env), "KBOX_SECCOMP_CACHE_DIR=%s", dir);
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--bind", bind, "--", "/escape", NULL};
  char *extra[] = {env, NULL};
  cr_assert_eq(kt_run(argv, extra, -1, 180, r), 0);
}

/* Every attempt refused, and the filter is on; returns the attempt lines (malloc'ed). */
static char *expect_all_denied(const struct kt_result *r, const char *what) {
  size_t cap = strlen(r->out) + 1, used = 0;
  char *lines = calloc(1, cap), *copy = strdup(r->out);
  int attempts = 0;
  for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    if (strncmp(l, "attempt=", 8) != 0) continue;
    attempts++;
    cr_expect(strstr(l, " result=denied") != NULL, "%s: not refused: %s", what, l);
    used += (size_t)snprintf(lines + used, cap - used, "%s\n", l);
  }
  free(copy);
  cr_expect_geq(attempts, 40, "%s: only %d attempts ran (stderr: %s)", what, attempts, r->err);
  cr_expect_str_eq(kt_field(r->out, "Seccomp") ? kt_field(r->out, "Seccomp") : "?", "2", "%s", what);
  cr_expect_eq(r->exit_code, 0, "%s: battery exit %d; stderr: %s", what, r->exit_code, r->err);
  return lines;
}

/* The one cache file in dir ending in suffix (static buffer), or NULL. */
static const char *cache_file_ending(const char *dir, const char *suffix) {
  static char path[4400];
  DIR *d = opendir(dir);
  if (d == NULL) return NULL;
  const char *found = NULL;
  size_t k = strlen(suffix);
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t n = strlen(e->d_name);
    if (n > k && strcmp(e->d_name + n - k, suffix) == 0) {
      snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
      found = path;
    }
  }
  closedir(d);
  return found;
}

static const char *cache_file(const char *dir) { return cache_file_ending(dir, ".bpf"); }

/* Overwrite path with a well-formed cache file whose one program allows every syscall, plus
   `extra` stray bytes; then give it owner uid and mode. */
static void plant_allow_all(const char *path, size_t extra, uid_t uid, mode_t mode) {
  unsigned char buf[64] = {0};
  memcpy(buf, "kboxbpf1", 8);
  uint32_t len[2] = {1, 0};
  memcpy(buf + 8, len, sizeof(len));
  struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  memcpy(buf + 16, &allow, sizeof(allow));
  kt_write_data(path, buf, 24 + extra);
  cr_assert_eq(chown(path, uid, 0), 0);
  cr_assert_eq(chmod(path, mode), 0);
}

static char *fresh_cache(void) {
  char *base = kt_tmpdir();
  char *dir = malloc(strlen(base) + 16);
  sprintf(dir, "%s/seccomp", base);
  free(base);
  return dir;
}

/* Same verdicts from the freshly compiled filter (empty cache) and from the cached one. */
Test(seccomp_cache, fresh_and_cached_filters_refuse_the_same) {
  if (!kt_is_root()) kt_skip_or_fail("needs root");
  char *dir = fresh_cache();
  struct kt_result r1, r2;
  run_battery(dir, &r1);
  char *fresh = expect_all_denied(&r1, "fresh filter");
  const char *file = cache_file(dir);
  cr_assert_not_null(file, "no cache file was written in %s", dir);
  struct stat st;
  cr_assert_eq(stat(file, &st), 0);
  cr_expect_eq(st.st_mode & 0777, 0600);
  cr_expect_eq(st.st_size % 8, 0);
  cr_assert_eq(stat(dir, &st), 0);
  cr_expect_eq(st.st_mode & 0777, 0700);
  run_battery(dir, &r2);
  char *cached = expect_all_denied(&r2, "cached filter");
  cr_expect_str_eq(cached, fresh, "the cached filter answered differently");
  free(fresh);
  free(cached);
  kt_result_free(&r1);
  kt_result_free(&r2);
  kt_rmrf(dir);
  free(dir);
}

/* Control: a well-formed cache file of our own IS used (so the cases below can fail). Then the same
   allow-all program is ignored when foreign-owned, group/other writable, or torn. */
Test(seccomp_cache, untrusted_cache_files_are_ignored) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (chown to a foreign uid)");
  char *dir = fresh_cache();
  struct kt_result r;
  run_battery(dir, &r);
  kt_result_free(&r);
  char file[4400];
  cr_assert_not_null(cache_file(dir));
  snprintf(file, sizeof(file), "%s", cache_file(dir));

  plant_allow_all(file, 0, 0, 0600);
  run_battery(dir, &r);
  cr_expect(strstr(r.out, "attempt=adjtimex result=ALLOWED") != NULL,
            "control: our own allow-all cache file was not used:\n%s", r.out);
  kt_result_free(&r);

  static const struct { const char *what; size_t extra; uid_t uid; mode_t mode; } bad[] = {
      {"foreign-owned", 0, 12345, 0600},
      {"group-writable", 0, 0, 0620},
      {"other-writable", 0, 0, 0602},
      {"torn (not whole instructions)", 3, 0, 0600},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    plant_allow_all(file, bad[i].extra, bad[i].uid, bad[i].mode);
    run_battery(dir, &r);
    free(expect_all_denied(&r, bad[i].what));
    kt_result_free(&r);
  }
  kt_rmrf(dir);
  free(dir);
}

/* A cache that cannot be created or written costs the compile, never the run. */
Test(seccomp_cache, unwritable_cache_does_not_break_a_run) {
  if (!kt_is_root()) kt_skip_or_fail("needs root");
  static const char *const dirs[] = {"/proc/kbox-no-such-cache/seccomp", "/dev/null/seccomp"};
  for (size_t i = 0; i < 2; i++) {
    struct kt_result r;
    run_battery(dirs[i], &r);
    free(expect_all_denied(&r, dirs[i]));
    kt_result_free(&r);
  }
}

/* The pids limit a run with the cache at dir reports (kbox's limits, from the profile or its record). */
static long long reported_pids(const char *dir) {
  char *base = kt_tmpdir();
  char report[4200], env[4200];
  snprintf(report, sizeof(report), "%s/report.json", base);
  snprintf(env, sizeof(env), "KBOX_SECCOMP_CACHE_DIR=%s", dir);
  char *argv[] = {(char *)kt_kbox(), "run", "--rootfs", "/", "--report", report, "--", "/bin/true", NULL};
  char *extra[] = {env, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, extra, -1, 120, &r), 0);
  cr_assert_eq(r.exit_code, 0, "stderr: %s", r.err);
  json_error_t je;
  json_t *v = json_load_file(report, 0, &je);
  cr_assert_not_null(v, "no report: %s", je.text);
  json_t *pids = json_object_get(json_object_get(json_object_get(v, "limits"), "pids"), "value");
  cr_assert(json_is_integer(pids), "no limits.pids.value in the report");
  long long n = json_integer_value(pids);
  json_decref(v);
  kt_result_free(&r);
  kt_rmrf(base);
  free(base);
  return n;
}

/* Rewrite the profile record at path with a pids limit of 77 (its layout: magic, set bits, zero,
   memory, swap, disk, pids, nofile, cpus, filter key), plus `extra` stray bytes; owner uid, mode. */
static void plant_pids_77(const char *path, const unsigned char *orig, size_t extra, uid_t uid, mode_t mode) {
  unsigned char buf[160];
  memcpy(buf, orig, 128);
  uint32_t set;
  memcpy(&set, buf + 8, 4);
  set |= 8; /* pids given */
  memcpy(buf + 8, &set, 4);
  uint64_t pids = 77;
  memcpy(buf + 40, &pids, 8);
  memset(buf + 128, 0, sizeof(buf) - 128);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(buf, 1, 128 + extra, f), 128 + extra);
  fclose(f);
  cr_assert_eq(chown(path, uid, 0), 0);
  cr_assert_eq(chmod(path, mode), 0);
}

/* Control: our own record IS used (the run reports its pids limit), so the cases can fail; then
   the same record is ignored when foreign-owned, group/other writable or of the wrong size. */
Test(seccomp_cache, untrusted_profile_records_are_ignored) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (chown to a foreign uid)");
  char *dir = fresh_cache();
  long long normal = reported_pids(dir);
  cr_assert_neq(normal, 77);
  const char *found = cache_file_ending(dir, ".prof");
  cr_assert_not_null(found, "no profile record was written in %s", dir);
  char file[4400];
  snprintf(file, sizeof(file), "%s", found);
  unsigned char orig[128];
  FILE *f = fopen(file, "r");
  cr_assert_not_null(f);
  cr_assert_eq(fread(orig, 1, sizeof(orig), f), sizeof(orig), "the record is not 128 bytes");
  fclose(f);

  plant_pids_77(file, orig, 0, 0, 0600);
  cr_expect_eq(reported_pids(dir), 77, "control: our own profile record was not used");

  static const struct { const char *what; size_t extra; uid_t uid; mode_t mode; } bad[] = {
      {"foreign-owned", 0, 12345, 0600},
      {"group-writable", 0, 0, 0620},
      {"other-writable", 0, 0, 0602},
      {"wrong size", 8, 0, 0600},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    plant_pids_77(file, orig, bad[i].extra, bad[i].uid, bad[i].mode);
    cr_expect_eq(reported_pids(dir), normal, "%s profile record was used", bad[i].what);
  }
  kt_rmrf(dir);
  free(dir);
}
