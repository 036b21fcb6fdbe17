#include "remote/protections.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/alloc.h"
#include "util/cleanup.h"

const char *kbox_prot_name(enum kbox_prot which) { return kbox_feature_key((enum kbox_feature)which); }

void kbox_protections_probe(struct kbox_protections *p, const struct kbox_spec *spec) {
  kbox_probe_run(&p->probe, spec, false);
}

void kbox_protections_set_state(struct kbox_protections *p, enum kbox_prot which, enum kbox_verdict_state s, const char *why) {
  kbox_verdict_set(&p->probe.v[which], (enum kbox_feature)which, s, 0, NULL, "%s", s == KBOX_VERDICT_OK ? "" : why);
}

void kbox_protections_set(struct kbox_protections *p, enum kbox_prot which, bool active, const char *why) {
  kbox_protections_set_state(p, which, active ? KBOX_VERDICT_OK : KBOX_VERDICT_MISSING, why);
}

bool kbox_protections_active(const struct kbox_protections *p, enum kbox_prot which) {
  return p->probe.v[which].state == KBOX_VERDICT_OK;
}

static enum kbox_verdict_state state_of(const struct kbox_protections *p, int i) { return p->probe.v[i].state; }
static const char *why_of(const struct kbox_protections *p, int i) { return p->probe.v[i].detail; }

uint64_t kbox_protections_ns_flags(const struct kbox_protections *p) { return kbox_probe_ns_flags(&p->probe); }

int kbox_protections_parse_require(const char *list, uint32_t *mask, kbox_error_t *err) {
  *mask = 0;
  if (list == NULL) return 0;
  cleanup_free char *copy = xstrdup(list);
  char *save = NULL;
  for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    if (strcmp(tok, "all") == 0) {
      *mask = (1u << KBOX_PROT_COUNT) - 1;
      continue;
    }
    int found = -1;
    char known[512] = "";
    for (int i = 0; i < KBOX_PROT_COUNT; i++) {
      if (strcmp(tok, kbox_prot_name(i)) == 0) found = i;
      snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s, ", kbox_prot_name(i));
    }
    if (found < 0) return kbox_error_make(err, 0, "KBOX_REQUIRE: unknown protection '%s' (known: %sall)", tok, known);
    *mask |= 1u << found;
  }
  return 0;
}

int kbox_protections_check(const struct kbox_protections *p, uint32_t required, kbox_error_t *err) {
  char missing[1024] = "";
  size_t off = 0;
  for (int i = 0; i < KBOX_PROT_COUNT; i++) {
    if (!(required & (1u << i)) || state_of(p, i) == KBOX_VERDICT_OK) continue;
    int n = snprintf(missing + off, sizeof(missing) - off, "%s%s (%s%s)", off ? ", " : "", kbox_prot_name(i),
                     state_of(p, i) == KBOX_VERDICT_PARTIAL ? "partial: " : "", why_of(p, i));
    if (n > 0 && (size_t)n < sizeof(missing) - off) off += (size_t)n;
  }
  if (off == 0) return 0;
  kbox_error_make(err, 0, "KBOX_REQUIRE: required protection missing in this pod: %s", missing);
  return kbox_error_hint(err, "allow it in the pod's securityContext (see docs/pods.md) or remove it from KBOX_REQUIRE");
}

/* Append printf output to buf at *off, keeping it terminated. */
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t n, size_t *off, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf + *off, n - *off, fmt, ap);
  va_end(ap);
  if (w > 0) *off = (size_t)w < n - *off ? *off + (size_t)w : n - 1;
}

void kbox_protections_summary(const struct kbox_protections *p, char *buf, size_t n) {
  static const char *const heads[] = {"protections active: ", "; partial: ", "; missing: "};
  size_t off = 0;
  buf[0] = '\0';
  for (int pass = KBOX_VERDICT_OK; pass <= KBOX_VERDICT_MISSING; pass++) {
    bool first = true;
    for (int i = 0; i < KBOX_PROT_COUNT; i++) {
      if ((int)state_of(p, i) != pass) continue;
      if (first) append(buf, n, &off, "%s", heads[pass]);
      if (pass == KBOX_VERDICT_OK) append(buf, n, &off, "%s%s", first ? "" : ",", kbox_prot_name(i));
      else append(buf, n, &off, "%s%s (%s)", first ? "" : ", ", kbox_prot_name(i), why_of(p, i));
      first = false;
    }
    if (first && pass != KBOX_VERDICT_PARTIAL) append(buf, n, &off, "%snone", heads[pass]);
  }
}

json_t *kbox_protections_json(const struct kbox_protections *p) {
  json_t *active = json_array(), *partial = json_object(), *missing = json_object();
  for (int i = 0; i < KBOX_PROT_COUNT; i++) {
    if (state_of(p, i) == KBOX_VERDICT_OK) json_array_append_new(active, json_string(kbox_prot_name(i)));
    else json_object_set_new(state_of(p, i) == KBOX_VERDICT_PARTIAL ? partial : missing, kbox_prot_name(i),
                             json_string(why_of(p, i)));
  }
  return json_pack("{s:o, s:o, s:o}", "active", active, "partial", partial, "missing", missing);
}

int kbox_protections_write_json(json_t *protections, json_t *extra, const char *path, kbox_error_t *err) {
  json_t *doc = json_object();
  json_object_set_new(doc, "protections", protections);
  if (extra != NULL) json_object_update_missing(doc, extra);
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int r = json_dump_file(doc, tmp, JSON_INDENT(2));
  json_decref(doc);
  if (r < 0) return kbox_error_make(err, errno, "KBOX_STATUS_FILE: writing %s", tmp);
  chmod(tmp, 0644);
  if (rename(tmp, path) < 0) return kbox_error_make(err, errno, "KBOX_STATUS_FILE: renaming %s to %s", tmp, path);
  return 0;
}

int kbox_protections_write_status(const struct kbox_protections *p, json_t *extra, const char *path, kbox_error_t *err) {
  return kbox_protections_write_json(kbox_protections_json(p), extra, path, err);
}
