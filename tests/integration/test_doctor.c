/* `kbox doctor`: each verdict must match what a real `kbox run` with the same options achieves on
   this host (as root and rootless), and in constructed environments where a feature is really
   refused (user namespaces disabled; mount(2) refused by a seccomp filter), doctor must say missing
   and `kbox run` must fail. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "testlib.h"

#define SANDBOX_ID "doctorcmp"

/* The constrain helper built beside this test. */
static const char *constrain(void) {
  static char path[4096];
  const char *root = getenv("KBOX_BUILD_ROOT");
  snprintf(path, sizeof(path), "%s/tests/integration/constrain", root ? root : ".");
  return path;
}

/* argv of [WRAP MODE] kbox VERB [--rootfs R] [--workdir W] EXTRA... (static storage, NULL-terminated). */
static char **command(const char *wrap_mode, const char *verb, const char *rootfs, const char *workdir,
                      const char *const *extra) {
  static char *v[64];
  size_t n = 0;
  if (wrap_mode != NULL) {
    v[n++] = (char *)constrain();
    v[n++] = (char *)wrap_mode;
  }
  v[n++] = (char *)kt_kbox();
  v[n++] = (char *)verb;
  if (rootfs != NULL) {
    v[n++] = "--rootfs";
    v[n++] = (char *)rootfs;
  }
  if (workdir != NULL) {
    v[n++] = "--workdir";
    v[n++] = (char *)workdir;
  }
  for (size_t i = 0; extra[i] != NULL && n < 62; i++) v[n++] = (char *)extra[i];
  v[n] = NULL;
  return v;
}

/* Doctor's JSON for that sandbox; *code gets its exit status. */
static json_t *doctor(const char *wrap_mode, int as_uid, const char *rootfs, const char *workdir, int *code) {
  struct kt_result r;
  cr_assert(kt_run(command(wrap_mode, "doctor", rootfs, workdir, FX_ARGS("--json")), NULL, as_uid, 120, &r) == 0);
  json_error_t jerr;
  json_t *doc = json_loads(r.out, 0, &jerr);
  cr_assert(doc != NULL, "doctor --json printed no JSON: %s\nstdout: %s\nstderr: %s", jerr.text, r.out, r.err);
  *code = r.exit_code;
  kt_result_free(&r);
  return doc;
}

static json_t *verdict(json_t *doc, const char *key) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(doc, "checks"), i, c)
    if (strcmp(json_string_value(json_object_get(c, "key")), key) == 0) return c;
  cr_assert_fail("doctor has no verdict '%s'", key);
  return NULL;
}

static const char *state(json_t *doc, const char *key) {
  return json_string_value(json_object_get(verdict(doc, key), "state"));
}

static const char *detail(json_t *doc, const char *key) {
  return json_string_value(json_object_get(verdict(doc, key), "detail"));
}

static bool is_ok(json_t *doc, const char *key) { return strcmp(state(doc, key), "ok") == 0; }

/* Every verdict doctor marks required is ok. */
static bool all_required_ok(json_t *doc) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(doc, "checks"), i, c)
    if (json_is_true(json_object_get(c, "required")) && !json_is_true(json_object_get(c, "ok"))) return false;
  return true;
}

/* Filesystem type of the last mount on "/" in a mountinfo text ("" if none). */
static void root_fstype(const char *text, char *out, size_t n) {
  out[0] = '\0';
  for (const char *line = text; line != NULL && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    char point[256], fstype[64];
    const char *dash = strstr(line, " - ");
    const char *eol = strchr(line, '\n');
    if (dash == NULL || (eol != NULL && dash > eol)) continue;
    if (sscanf(line, "%*s %*s %*s %*s %255s", point) == 1 && strcmp(point, "/") == 0 &&
        sscanf(dash + 3, "%63s", fstype) == 1)
      snprintf(out, n, "%s", fstype);
  }
}

/* "Name:\tvalue" line of /proc/self/status text, or "". */
static const char *status_field(const char *text, const char *name) {
  static char buf[128];
  buf[0] = '\0';
  const char *p = strstr(text, name);
  if (p != NULL) sscanf(p + strlen(name), ":%*[ \t]%127s", buf);
  return buf;
}

/* Number of limits (memory, pids, cpu) the --report says a cgroup enforced. */
static int limits_by_cgroup(const char *err_text) {
  const char *start = strstr(err_text, "{\n");
  cr_assert(start != NULL, "no --report JSON on stderr: %s", err_text);
  json_error_t jerr;
  json_t *rep = json_loads(start, JSON_DISABLE_EOF_CHECK, &jerr);
  cr_assert(rep != NULL, "bad --report JSON: %s", jerr.text);
  static const char *const lims[] = {"memory", "pids", "cpu"};
  int n = 0;
  for (size_t i = 0; i < 3; i++) {
    const char *m = json_string_value(json_object_get(json_object_get(json_object_get(rep, "limits"), lims[i]), "mechanism"));
    n += m != NULL && strncmp(m, "cgroup", 6) == 0;
  }
  json_decref(rep);
  return n;
}

/* Run the sandbox doctor described and look at it from inside; compare verdict by verdict. */
FX_BOTH(doctor, verdicts_match_kbox_run) {
  char *workdir = kt_tmpdir();
  if (uid >= 0) cr_assert_eq(chown(workdir, (uid_t)uid, (gid_t)uid), 0);
  const char *rootfs = fx_rootfs_as(uid);
  int code = 0;
  json_t *doc = doctor(NULL, uid, rootfs, workdir, &code);
  cr_assert_eq(code, json_is_true(json_object_get(doc, "full_isolation")) ? 0 : 1, "exit code must follow full_isolation");
  char script[8192];
  snprintf(script, sizeof(script),
           "/probe info loopback; cat /proc/self/status; echo MOUNTINFO; cat /proc/self/mountinfo; echo END; "
           "ls -lnd /bin; touch %s/made", workdir);
  struct kt_result r;
  fx_run(uid, FX_ARGS("--id", SANDBOX_ID, "--workdir", workdir, "--report", "-"), FX_ARGS("/bin/sh", "-c", script), &r);
  /* doctor says every required step works <=> kbox run works */
  cr_assert_eq(all_required_ok(doc), r.exit_code == 0, "doctor full=%d but kbox run exited %d: %s",
               all_required_ok(doc), r.exit_code, r.err);
  if (r.exit_code == 0) {
    char fstype[64];
    const char *mi = strstr(r.out, "MOUNTINFO\n");
    cr_assert_not_null(mi);
    root_fstype(mi, fstype, sizeof(fstype));
    cr_assert_eq(is_ok(doc, "overlay"), strcmp(fstype, "overlay") == 0, "overlay: doctor %s, root is %s",
                 state(doc, "overlay"), fstype);
    const char *host = kt_field(r.out, "hostname");
    cr_assert_eq(is_ok(doc, "hostname"), host != NULL && strcmp(host, SANDBOX_ID) == 0, "hostname: %s", host);
    const char *lo = kt_field(r.out, "loopback_tcp");
    cr_assert_eq(is_ok(doc, "loopback"), lo != NULL && strcmp(lo, "ok") == 0, "loopback: %s", lo);
    const char *pids = kt_field(r.out, "visible_pids");
    cr_assert_eq(is_ok(doc, "proc"), pids != NULL && atoi(pids) <= 4, "fresh /proc: %s pids visible", pids);
    cr_assert_eq(is_ok(doc, "seccomp"), strcmp(status_field(r.out, "Seccomp"), "2") == 0, "seccomp: %s", r.out);
    cr_assert_eq(is_ok(doc, "caps"), strcmp(status_field(r.out, "CapBnd"), "0000000000000000") == 0, "caps: %s", r.out);
    /* idmap: the file the sandbox user made in the workdir belongs to the workdir's owner */
    char made[4200];
    snprintf(made, sizeof(made), "%s/made", workdir);
    struct stat wst, fst;
    cr_assert_eq(stat(workdir, &wst), 0);
    bool keeps_owner = stat(made, &fst) == 0 && fst.st_uid == wst.st_uid;
    cr_assert_eq(strcmp(state(doc, "idmap"), "missing") != 0, keeps_owner, "idmap: doctor %s (%s), file owner %d, dir owner %d",
                 state(doc, "idmap"), detail(doc, "idmap"), keeps_owner ? (int)fst.st_uid : -1, (int)wst.st_uid);
    if (uid < 0) { /* root mode: root-owned layer files stay root's inside exactly when doctor says ok */
      const char *ls = strstr(r.out, "drwx");
      cr_assert_not_null(ls, "%s", r.out);
      int owner = -1;
      sscanf(ls, "%*s %*s %d", &owner);
      cr_assert_eq(is_ok(doc, "idmap"), owner == 0, "layer ids: doctor %s, /bin owned by %d inside", state(doc, "idmap"), owner);
    }
  }
  /* cgroups: ok <=> every limit by a cgroup; partial <=> some; missing <=> none */
  if (r.exit_code == 0) {
    int n = limits_by_cgroup(r.err);
    const char *want = n == 3 ? "ok" : n > 0 ? "partial" : "missing";
    cr_assert_str_eq(state(doc, "cgroup"), want, "cgroup: doctor '%s' (%s), kbox run enforced %d limits by cgroups",
                     state(doc, "cgroup"), detail(doc, "cgroup"), n);
  }
  kt_result_free(&r);
  json_decref(doc);
  kt_rmrf(workdir);
  free(workdir);
}

/* A layer on a filesystem without idmapped-mount support (ramfs, in a mount namespace of this
   test): doctor says idmap partial, and inside kbox run the layer's root-owned files are nobody's
   while a workdir file still keeps its owner. */
Test(doctor_root, partial_idmap_for_a_ramfs_layer, .fini = fx_cleanup, .timeout = 180) {
  fx_require(-1);
  cr_assert_eq(unshare(CLONE_NEWNS), 0);
  cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
  char *layer = kt_tmpdir(), *workdir = kt_tmpdir();
  cr_assert_eq(mount("kbox-test", layer, "ramfs", 0, "mode=0755"), 0, "mount ramfs: %s", strerror(errno));
  char cmd[8192];
  snprintf(cmd, sizeof(cmd), "cp -a '%s/.' '%s/'", fx_rootfs(), layer);
  cr_assert_eq(system(cmd), 0);
  int code = 0;
  json_t *doc = doctor(NULL, -1, layer, workdir, &code);
  cr_assert_str_eq(state(doc, "idmap"), "partial", "%s", detail(doc, "idmap"));
  cr_assert(strstr(detail(doc, "idmap"), "rootfs layers are not idmapped") != NULL, "%s", detail(doc, "idmap"));
  cr_assert_eq(code, 0, "idmap is not required: partial keeps full isolation");
  struct kt_result r;
  snprintf(cmd, sizeof(cmd), "ls -lnd /bin; touch %s/made", workdir);
  cr_assert(kt_run(command(NULL, "run", layer, workdir, FX_ARGS("--", "/bin/sh", "-c", cmd)), NULL, -1, 60, &r) == 0);
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  int owner = -1;
  const char *ls = strstr(r.out, "drwx");
  cr_assert(ls != NULL && sscanf(ls, "%*s %*s %d", &owner) == 1, "%s", r.out);
  cr_assert_eq(owner, 65534, "doctor says the layers are not idmapped, yet /bin is owned by %d inside", owner);
  char made[4200];
  snprintf(made, sizeof(made), "%s/made", workdir);
  struct stat wst, fst;
  cr_assert(stat(workdir, &wst) == 0 && stat(made, &fst) == 0 && fst.st_uid == wst.st_uid,
            "doctor says the workdir is idmapped, yet its file does not keep the owner");
  kt_result_free(&r);
  json_decref(doc);
  umount2(layer, MNT_DETACH);
  kt_rmrf(layer);
  kt_rmrf(workdir);
  free(layer);
  free(workdir);
}

/* The default image, as a new user runs it: doctor's overlay verdict against kbox run's root. */
Test(doctor, default_image_overlay, .timeout = 180) {
  if (!kt_is_root()) kt_skip_or_fail("needs root (the default image is installed for root)");
  int code = 0;
  json_t *doc = doctor(NULL, -1, NULL, NULL, &code);
  json_t *layers = json_object_get(json_object_get(doc, "probed"), "rootfs");
  if (json_object_get(json_object_get(doc, "probed"), "note") != NULL)
    kt_skip_or_fail("the default image is not built (tools/setup.sh builds it)");
  cr_assert(json_array_size(layers) >= 1 && strstr(json_string_value(json_array_get(layers, 0)), "default") != NULL,
            "doctor did not probe the default image");
  struct kt_result r;
  cr_assert(kt_run(command(NULL, "run", NULL, NULL, FX_ARGS("--", "cat", "/proc/self/mountinfo")), NULL, -1, 120, &r) == 0);
  char fstype[64];
  root_fstype(r.out, fstype, sizeof(fstype));
  bool overlay_root = r.exit_code == 0 && strcmp(fstype, "overlay") == 0;
  cr_assert_eq(is_ok(doc, "overlay"), overlay_root, "doctor says overlay %s (%s); kbox run exited %d with root %s: %s",
               state(doc, "overlay"), detail(doc, "overlay"), r.exit_code, fstype, r.err);
  kt_result_free(&r);
  json_decref(doc);
}

/* User namespaces disabled (user.max_user_namespaces=0 in a test namespace): doctor says missing
   with the reason, and kbox run in the same environment fails. */
Test(doctor_constrained, no_user_namespaces, .fini = fx_cleanup, .timeout = 180) {
  fx_require(-1);
  const char *rootfs = fx_rootfs();
  int code = 0;
  json_t *doc = doctor("no-userns", -1, rootfs, NULL, &code);
  cr_assert_str_eq(state(doc, "userns"), "missing", "%s", detail(doc, "userns"));
  cr_assert(strstr(detail(doc, "userns"), "No space left") != NULL, "%s", detail(doc, "userns"));
  cr_assert_eq(code, 1);
  cr_assert(!json_is_true(json_object_get(doc, "full_isolation")));
  struct kt_result r;
  cr_assert(kt_run(command("no-userns", "run", rootfs, NULL, FX_ARGS("--", "/bin/true")), NULL, -1, 60, &r) == 0);
  cr_assert_eq(r.exit_code, 125, "kbox run must fail where doctor says user namespaces are missing: %d %s", r.exit_code, r.err);
  cr_assert(strstr(r.err, "user namespace") != NULL && strstr(r.err, "No space left") != NULL, "%s", r.err);
  /* and its failure names the refused step in doctor's words */
  cr_assert(strstr(r.err, "this host refuses what the sandbox needs: user namespaces (missing") != NULL, "%s", r.err);
  kt_result_free(&r);
  json_decref(doc);
}

/* mount(2) refused by a seccomp filter: no overlay root, no fresh /proc; kbox run fails. */
Test(doctor_constrained, mount_refused, .fini = fx_cleanup, .timeout = 180) {
  fx_require(-1);
  const char *rootfs = fx_rootfs();
  int code = 0;
  json_t *doc = doctor("no-mount", -1, rootfs, NULL, &code);
  cr_assert_str_eq(state(doc, "overlay"), "missing", "%s", detail(doc, "overlay"));
  cr_assert(strstr(detail(doc, "overlay"), "Operation not permitted") != NULL, "%s", detail(doc, "overlay"));
  cr_assert_str_eq(state(doc, "proc"), "missing", "%s", detail(doc, "proc"));
  cr_assert_str_eq(state(doc, "userns"), "ok", "%s", detail(doc, "userns"));
  cr_assert_eq(code, 1);
  struct kt_result r;
  cr_assert(kt_run(command("no-mount", "run", rootfs, NULL, FX_ARGS("--", "/bin/true")), NULL, -1, 60, &r) == 0);
  cr_assert_eq(r.exit_code, 125, "kbox run must fail where doctor says overlay is missing: %d %s", r.exit_code, r.err);
  cr_assert(strstr(r.err, "Operation not permitted") != NULL, "%s", r.err);
  cr_assert(strstr(r.err, "this host refuses what the sandbox needs: overlayfs in a user namespace, fresh /proc") != NULL,
            "%s", r.err);
  kt_result_free(&r);
  json_decref(doc);
}

Test(doctor, text_output_and_bad_option, .fini = fx_cleanup) {
  struct kt_result r;
  cr_assert(kt_run(command(NULL, "doctor", fx_rootfs(), NULL, FX_NONE), NULL, -1, 120, &r) == 0);
  cr_assert(strstr(r.out, "user namespaces") != NULL && strstr(r.out, "overlayfs") != NULL, "%s", r.out);
  cr_assert(strstr(r.out, "probed as 'kbox run' would run here") != NULL, "%s", r.out);
  kt_result_free(&r);
  char *bad[] = {(char *)kt_kbox(), "doctor", "--bogus", NULL};
  cr_assert(kt_run(bad, NULL, -1, 60, &r) == 0);
  cr_assert_eq(r.exit_code, 125);
  cr_assert(strstr(r.err, "--bogus") != NULL);
  kt_result_free(&r);
  char *cmd[] = {(char *)kt_kbox(), "doctor", "--", "true", NULL};
  cr_assert(kt_run(cmd, NULL, -1, 60, &r) == 0);
  cr_assert_eq(r.exit_code, 125);
  cr_assert(strstr(r.err, "doctor takes no command") != NULL, "%s", r.err);
  kt_result_free(&r);
}
