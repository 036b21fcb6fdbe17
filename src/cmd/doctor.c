/* `kbox doctor`: what this host allows, found by the host probe (src/sandbox/probe.c), which does
   each step the way `kbox run` with the same options would, and what each missing piece disables. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run_opts.h"
#include "sandbox/probe.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/log.h"

/* Doctor's order: namespaces, then the sandbox's steps, then the limits. */
static const enum kbox_feature order[] = {
    KBOX_FEAT_USERNS,   KBOX_FEAT_UNPRIV_USERNS, KBOX_FEAT_PIDNS,   KBOX_FEAT_MOUNTNS, KBOX_FEAT_NETNS,
    KBOX_FEAT_IPCNS,    KBOX_FEAT_UTSNS,         KBOX_FEAT_CGROUPNS, KBOX_FEAT_HOSTNAME, KBOX_FEAT_LOOPBACK,
    KBOX_FEAT_OVERLAY,  KBOX_FEAT_PROC,          KBOX_FEAT_IDMAP,   KBOX_FEAT_CAPS,    KBOX_FEAT_SECCOMP,
    KBOX_FEAT_CLONE3,   KBOX_FEAT_CGROUP};
#define N_ORDER (sizeof(order) / sizeof(order[0]))

static void usage(FILE *out) {
  fprintf(out,
          "Usage: kbox doctor [--json] [RUN OPTIONS]\n"
          "Probe what this host allows 'kbox run' by doing each of its set-up steps the way it would, in\n"
          "throwaway processes: user namespaces (as you, and as an unprivileged user), each namespace type,\n"
          "the hostname, loopback, the overlay root, a fresh /proc, idmapped mounts (workdir and layers), the\n"
          "capability drop, the seccomp filter of the profile, clone3/pidfd, and the cgroup limits.\n"
          "RUN OPTIONS (--rootfs, --image, --workdir, --profile, --user, --cgroup-parent, ...) are those of\n"
          "'kbox run'; the probe uses the sandbox they describe (default: the default image).\n"
          "Exit 0 when 'kbox run' can fully isolate here, 1 otherwise, 125 on a bad option.\n\n"
          "  --json   print the verdicts as a JSON object\n\n"
          "Examples:\n  kbox doctor\n  kbox doctor --json --workdir \"$PWD\"\n");
}

/* Does the option list choose the rootfs itself? */
static bool chooses_rootfs(const struct kbox_strv *a) {
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->v[i], "--rootfs") == 0 || strcmp(a->v[i], "--image") == 0) return true;
  return false;
}

/* The spec `kbox run OPTIONS` would use. Without an image, an empty temporary layer stands in
   (noted in *note) so the other steps can still be probed. */
static int build_spec(struct kbox_strv *a, struct kbox_spec *spec, char *layer, size_t n, char *note, size_t nn,
                      kbox_error_t *err) {
  bool help = false;
  kbox_spec_init(spec);
  if (kbox_run_opts_parse((int)a->n, a->v, spec, &help, err) < 0) return -1;
  if (spec->sandbox.argv.n > 0) return kbox_error_make(err, 0, "doctor takes no command (got '%s')", spec->sandbox.argv.v[0]);
  if (kbox_run_opts_finish(spec, err) == 0) return 0;
  if (chooses_rootfs(a) || spec->sandbox.rootfs.n > 0) return -1;
  snprintf(note, nn, "%s; probed with an empty layer instead", (*err)->msg);
  kbox_error_free(err);
  snprintf(layer, n, "/tmp/kbox-doctor-layer-XXXXXX");
  if (mkdtemp(layer) == NULL) return kbox_error_make(err, errno, "mkdtemp %s", layer);
  kbox_strv_add(&spec->sandbox.rootfs, layer);
  return kbox_run_opts_finish(spec, err);
}

static bool full_isolation(const struct kbox_probe *p) {
  for (size_t i = 0; i < N_ORDER; i++)
    if (kbox_feature_required(order[i]) && p->v[order[i]].state != KBOX_VERDICT_OK) return false;
  return true;
}

static void print_json(const struct kbox_probe *p, const struct kbox_spec *spec, const char *note) {
  json_t *arr = json_array(), *layers = json_array();
  for (size_t i = 0; i < N_ORDER; i++) json_array_append_new(arr, kbox_verdict_json(p, order[i]));
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++) json_array_append_new(layers, json_string(spec->sandbox.rootfs.v[i]));
  json_t *probed = json_pack("{s:o, s:s, s:b, s:o}", "rootfs", layers, "profile", spec->sec.profile, "rootless",
                             spec->rootless, "workdir", spec->sandbox.workdir ? json_string(spec->sandbox.workdir) : json_null());
  if (note[0] != '\0') json_object_set_new(probed, "note", json_string(note));
  json_t *o = json_pack("{s:o, s:b, s:o}", "checks", arr, "full_isolation", full_isolation(p), "probed", probed);
  json_dumpf(o, stdout, JSON_INDENT(2));
  putchar('\n');
  json_decref(o);
}

static void print_text(const struct kbox_probe *p, const struct kbox_spec *spec, const char *note) {
  printf("probed as 'kbox run' would run here: %s, rootfs", spec->rootless ? "rootless" : "as root");
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++) printf("%s%s", i ? ":" : " ", spec->sandbox.rootfs.v[i]);
  printf(", profile %s\n", spec->sec.profile);
  if (note[0] != '\0') printf("note: %s\n", note);
  for (size_t i = 0; i < N_ORDER; i++) {
    const struct kbox_verdict *v = &p->v[order[i]];
    const char *tag = v->state == KBOX_VERDICT_OK ? "ok" : v->state == KBOX_VERDICT_PARTIAL ? "part"
                                                   : kbox_feature_required(order[i]) ? "FAIL" : "warn";
    printf("%-4s %-30s %s\n", tag, kbox_feature_title(order[i]), v->detail);
    if (v->disables[0] != '\0') printf("     %-30s -> %s\n", "", v->disables);
  }
  printf("%s\n", full_isolation(p) ? "kbox run can fully isolate on this host."
                                   : "kbox run cannot fully isolate on this host (see FAIL lines).");
}

int kbox_cmd_doctor(int argc, char **argv) {
  bool json = false;
  struct kbox_strv a = {0};
  kbox_strv_add(&a, "doctor");
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) json = true;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      kbox_strv_free(&a);
      return 0;
    } else kbox_strv_add(&a, argv[i]);
  }
  cleanup_error kbox_error_t err = NULL;
  struct kbox_spec spec;
  char layer[64] = "", note[1024] = "";
  int rc = build_spec(&a, &spec, layer, sizeof(layer), note, sizeof(note), &err);
  kbox_strv_free(&a);
  if (rc < 0) {
    rc = kbox_error_report(&err);
  } else {
    kbox_log_set_level(spec.verbosity >= 2 ? KBOX_LOG_DEBUG : spec.verbosity ? KBOX_LOG_INFO : KBOX_LOG_ERROR);
    struct kbox_probe *p = xcalloc(1, sizeof(*p));
    kbox_probe_run(p, &spec, true);
    if (json) print_json(p, &spec, note);
    else print_text(p, &spec, note);
    rc = full_isolation(p) ? 0 : 1;
    free(p);
  }
  if (layer[0] != '\0') rmdir(layer);
  kbox_spec_free(&spec);
  return rc;
}
