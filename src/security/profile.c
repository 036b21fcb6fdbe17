#include "security/profile.h"

#include <errno.h>
#include <jansson.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>

#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/parse.h"

/* Where we are while walking the JSON: the file label for messages and the error slot. */
struct pctx {
  const char *label;
  kbox_error_t *err;
};

/* Fail with "<file>: <json path>: <problem>". */
__attribute__((format(printf, 3, 4))) static int bad(struct pctx *c, const char *jpath, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return kbox_error_make(c->err, 0, "profile %s: %s: %s", c->label, jpath[0] ? jpath : "(top level)", msg);
}

/* Format a JSON path (truncated quietly if absurdly long). */
__attribute__((format(printf, 3, 4))) static void path_fmt(char *out, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, n, fmt, ap);
  va_end(ap);
}

/* "parent.key" or "key" when parent is the root. */
static void join(char *out, size_t n, const char *parent, const char *key) {
  path_fmt(out, n, "%s%s%s", parent, parent[0] ? "." : "", key);
}

/* Reject any key of obj not in the NULL-terminated list `known`. */
static int check_keys(struct pctx *c, const char *jpath, json_t *obj, const char *const *known) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    bool ok = false;
    for (size_t i = 0; known[i] != NULL && !ok; i++) ok = strcmp(known[i], key) == 0;
    if (!ok) {
      char p[256];
      join(p, sizeof(p), jpath, key);
      char list[256] = "";
      for (size_t i = 0; known[i] != NULL; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", known[i]);
      return bad(c, p, "unknown key '%s' (allowed here: %s)", key, list);
    }
  }
  return 0;
}

static const struct { const char *name; uint32_t action; bool takes_errno; } actions[] = {
    {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW, false},
    {"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(EPERM), true},
    {"SCMP_ACT_KILL", SCMP_ACT_KILL_THREAD, false},
    {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD, false},
    {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS, false},
    {"SCMP_ACT_TRAP", SCMP_ACT_TRAP, false},
    {"SCMP_ACT_LOG", SCMP_ACT_LOG, false},
};

/* Action name (+ optional errno value) to a libseccomp action. */
static int parse_action(struct pctx *c, const char *jpath, json_t *name, const char *errno_path, json_t *errno_ret,
                        uint32_t *out) {
  if (!json_is_string(name)) return bad(c, jpath, "must be a string such as \"SCMP_ACT_ALLOW\"");
  const char *s = json_string_value(name);
  if (strcmp(s, "SCMP_ACT_TRACE") == 0 || strcmp(s, "SCMP_ACT_NOTIFY") == 0)
    return bad(c, jpath, "action '%s' is not supported by kbox (use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS)", s);
  for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
    if (strcmp(actions[i].name, s) != 0) continue;
    *out = actions[i].action;
    if (errno_ret == NULL) return 0;
    if (!actions[i].takes_errno) return bad(c, errno_path, "only valid with SCMP_ACT_ERRNO, not %s", s);
    if (!json_is_integer(errno_ret) || json_integer_value(errno_ret) < 1 || json_integer_value(errno_ret) > 4095)
      return bad(c, errno_path, "must be an errno number from 1 to 4095 (e.g. 1 for EPERM, 38 for ENOSYS)");
    *out = SCMP_ACT_ERRNO((uint32_t)json_integer_value(errno_ret));
    return 0;
  }
  return bad(c, jpath, "unknown action '%s' (known: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, "
                       "SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_LOG)", s);
}

/* Every architecture libseccomp knows, to tell "not on this machine" from "no such syscall". */
static const uint32_t all_arches[] = {
    SCMP_ARCH_X86, SCMP_ARCH_X86_64, SCMP_ARCH_X32, SCMP_ARCH_ARM, SCMP_ARCH_AARCH64, SCMP_ARCH_MIPS,
    SCMP_ARCH_MIPS64, SCMP_ARCH_MIPS64N32, SCMP_ARCH_MIPSEL, SCMP_ARCH_MIPSEL64, SCMP_ARCH_MIPSEL64N32,
    SCMP_ARCH_PPC, SCMP_ARCH_PPC64, SCMP_ARCH_PPC64LE, SCMP_ARCH_S390, SCMP_ARCH_S390X, SCMP_ARCH_PARISC,
    SCMP_ARCH_PARISC64, SCMP_ARCH_RISCV64,
};

static bool syscall_known(const char *name) {
  if (seccomp_syscall_resolve_name(name) != __NR_SCMP_ERROR) return true;
  for (size_t i = 0; i < sizeof(all_arches) / sizeof(all_arches[0]); i++)
    if (seccomp_syscall_resolve_name_arch(all_arches[i], name) != __NR_SCMP_ERROR) return true;
  return false;
}

static int parse_names(struct pctx *c, const char *jpath, json_t *names, struct kbox_sc_rule *r) {
  if (!json_is_array(names) || json_array_size(names) == 0)
    return bad(c, jpath, "must be a non-empty array of syscall names");
  r->names = xcalloc(json_array_size(names), sizeof(char *));
  size_t i;
  json_t *n;
  json_array_foreach(names, i, n) {
    char p[256];
    path_fmt(p, sizeof(p), "%s[%zu]", jpath, i);
    if (!json_is_string(n)) return bad(c, p, "must be a string");
    if (!syscall_known(json_string_value(n)))
      return bad(c, p, "unknown syscall '%s' (not known to libseccomp %u.%u on any architecture; check the spelling)",
                 json_string_value(n), seccomp_version()->major, seccomp_version()->minor);
    r->names[r->n_names++] = xstrdup(json_string_value(n));
  }
  return 0;
}

static const struct { const char *name; int op; } ops[] = {
    {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
    {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
    {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
};

/* A non-negative JSON integer (args values). */
static int get_u64(struct pctx *c, const char *jpath, json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return bad(c, jpath, "must be a non-negative integer");
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static int parse_arg(struct pctx *c, const char *jpath, json_t *a, struct kbox_sc_arg *out) {
  static const char *const keys[] = {"index", "value", "valueTwo", "op", NULL};
  char p[256];
  if (!json_is_object(a)) return bad(c, jpath, "must be an object {index, value, valueTwo, op}");
  if (check_keys(c, jpath, a, keys) < 0) return -1;
  uint64_t idx = 0;
  join(p, sizeof(p), jpath, "index");
  if (json_object_get(a, "index") == NULL) return bad(c, p, "missing (argument number 0 to 5)");
  if (get_u64(c, p, json_object_get(a, "index"), &idx) < 0) return -1;
  if (idx > 5) return bad(c, p, "argument index %llu is out of range 0 to 5", (unsigned long long)idx);
  out->index = (unsigned)idx;
  join(p, sizeof(p), jpath, "value");
  if (json_object_get(a, "value") == NULL) return bad(c, p, "missing");
  if (get_u64(c, p, json_object_get(a, "value"), &out->value) < 0) return -1;
  out->value_two = 0;
  join(p, sizeof(p), jpath, "valueTwo");
  if (json_object_get(a, "valueTwo") && get_u64(c, p, json_object_get(a, "valueTwo"), &out->value_two) < 0) return -1;
  join(p, sizeof(p), jpath, "op");
  json_t *op = json_object_get(a, "op");
  if (!json_is_string(op)) return bad(c, p, "missing or not a string (e.g. \"SCMP_CMP_EQ\")");
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    if (strcmp(ops[i].name, json_string_value(op)) == 0) {
      out->op = ops[i].op;
      return 0;
    }
  return bad(c, p, "unknown operator '%s' (known: SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT, _MASKED_EQ)", json_string_value(op));
}

static int parse_args(struct pctx *c, const char *jpath, json_t *args, struct kbox_sc_rule *r) {
  if (!json_is_array(args)) return bad(c, jpath, "must be an array of conditions");
  if (json_array_size(args) > KBOX_SC_MAX_ARGS) return bad(c, jpath, "at most %d conditions", KBOX_SC_MAX_ARGS);
  size_t i;
  json_t *a;
  json_array_foreach(args, i, a) {
    char p[256];
    path_fmt(p, sizeof(p), "%s[%zu]", jpath, i);
    if (parse_arg(c, p, a, &r->args[i]) < 0) return -1;
    for (size_t k = 0; k < i; k++)
      if (r->args[k].index == r->args[i].index)
        return bad(c, p, "a second condition on argument %u (conditions of one entry are ANDed and libseccomp allows "
                         "one per argument; write a separate entry for each alternative)", r->args[i].index);
    r->n_args++;
  }
  return 0;
}

static int parse_rule(struct pctx *c, const char *jpath, json_t *o, struct kbox_sc_rule *r) {
  static const char *const keys[] = {"names", "action", "errnoRet", "args", "comment", NULL};
  char p[256], pe[256];
  if (!json_is_object(o)) return bad(c, jpath, "must be an object {names, action, errnoRet, args}");
  if (check_keys(c, jpath, o, keys) < 0) return -1;
  join(p, sizeof(p), jpath, "names");
  if (parse_names(c, p, json_object_get(o, "names"), r) < 0) return -1;
  join(p, sizeof(p), jpath, "action");
  join(pe, sizeof(pe), jpath, "errnoRet");
  if (json_object_get(o, "action") == NULL) return bad(c, p, "missing");
  if (parse_action(c, p, json_object_get(o, "action"), pe, json_object_get(o, "errnoRet"), &r->action) < 0) return -1;
  join(p, sizeof(p), jpath, "args");
  if (json_object_get(o, "args") && !json_is_null(json_object_get(o, "args")) &&
      parse_args(c, p, json_object_get(o, "args"), r) < 0)
    return -1;
  if (json_object_get(o, "comment") && !json_is_string(json_object_get(o, "comment")))
    return bad(c, jpath, "comment must be a string");
  return 0;
}

static int parse_arches(struct pctx *c, json_t *a, struct kbox_sc_def *d) {
  d->arches[d->n_arches++] = seccomp_arch_native();
  if (a == NULL) return 0;
  if (!json_is_array(a)) return bad(c, "seccomp.architectures", "must be an array such as [\"SCMP_ARCH_X86_64\"]");
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    char p[64];
    path_fmt(p, sizeof(p), "seccomp.architectures[%zu]", i);
    const char *s = json_string_value(v);
    if (s == NULL || strncmp(s, "SCMP_ARCH_", 10) != 0) return bad(c, p, "must be a string such as \"SCMP_ARCH_X86_64\"");
    char lower[32];
    size_t n = 0;
    for (const char *q = s + 10; *q && n < sizeof(lower) - 1; q++) lower[n++] = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
    lower[n] = '\0';
    uint32_t arch = seccomp_arch_resolve_name(lower);
    if (arch == 0) return bad(c, p, "unknown architecture '%s'", s);
    bool dup = false;
    for (size_t k = 0; k < d->n_arches; k++) dup = dup || d->arches[k] == arch;
    if (!dup && d->n_arches < KBOX_SC_MAX_ARCHES) d->arches[d->n_arches++] = arch;
  }
  return 0;
}

static int parse_seccomp(struct pctx *c, json_t *o, struct kbox_sc_def *d) {
  static const char *const keys[] = {"defaultAction", "defaultErrnoRet", "architectures", "syscalls", NULL};
  if (!json_is_object(o)) return bad(c, "seccomp", "must be an object");
  if (check_keys(c, "seccomp", o, keys) < 0) return -1;
  if (json_object_get(o, "defaultAction") == NULL) return bad(c, "seccomp.defaultAction", "missing");
  if (parse_action(c, "seccomp.defaultAction", json_object_get(o, "defaultAction"), "seccomp.defaultErrnoRet",
                   json_object_get(o, "defaultErrnoRet"), &d->default_action) < 0)
    return -1;
  if (parse_arches(c, json_object_get(o, "architectures"), d) < 0) return -1;
  json_t *sc = json_object_get(o, "syscalls");
  if (sc == NULL) return 0;
  if (!json_is_array(sc)) return bad(c, "seccomp.syscalls", "must be an array of {names, action, ...}");
  d->rules = xcalloc(json_array_size(sc) + 1, sizeof(*d->rules));
  size_t i;
  json_t *r;
  json_array_foreach(sc, i, r) {
    char p[64];
    path_fmt(p, sizeof(p), "seccomp.syscalls[%zu]", i);
    d->n_rules++;
    if (parse_rule(c, p, r, &d->rules[i]) < 0) return -1;
  }
  return 0;
}

/* A size limit given as "512M" or as a number of bytes. */
static int limit_size(struct pctx *c, const char *jpath, json_t *v, uint64_t *out, bool *set) {
  char opt[512];
  snprintf(opt, sizeof(opt), "profile %s: %s", c->label, jpath);
  char num[32];
  const char *s = json_string_value(v);
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
    s = num;
  }
  if (s == NULL) return bad(c, jpath, "must be a size such as \"512M\" or a number of bytes");
  if (kbox_parse_size(opt, s, out, c->err) < 0) return -1;
  *set = true;
  return 0;
}

static int limit_uint(struct pctx *c, const char *jpath, json_t *v, uint64_t lo, uint64_t hi, uint64_t *out, bool *set) {
  if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)lo || json_integer_value(v) > (json_int_t)hi)
    return bad(c, jpath, "must be an integer from %llu to %llu", (unsigned long long)lo, (unsigned long long)hi);
  *out = (uint64_t)json_integer_value(v);
  *set = true;
  return 0;
}

static int parse_limits(struct pctx *c, json_t *o, struct kbox_profile_limits *l) {
  static const char *const keys[] = {"memory", "swap", "disk", "pids", "cpus", "nofile", NULL};
  if (!json_is_object(o)) return bad(c, "limits", "must be an object");
  if (check_keys(c, "limits", o, keys) < 0) return -1;
  json_t *v;
  if ((v = json_object_get(o, "memory")) && limit_size(c, "limits.memory", v, &l->memory_bytes, &l->memory_set) < 0) return -1;
  if ((v = json_object_get(o, "swap")) && limit_size(c, "limits.swap", v, &l->swap_bytes, &l->swap_set) < 0) return -1;
  if ((v = json_object_get(o, "disk")) && limit_size(c, "limits.disk", v, &l->disk_bytes, &l->disk_set) < 0) return -1;
  if ((v = json_object_get(o, "pids")) && limit_uint(c, "limits.pids", v, 1, 4194304, &l->pids, &l->pids_set) < 0) return -1;
  if ((v = json_object_get(o, "nofile")) && limit_uint(c, "limits.nofile", v, 16, 1048576, &l->nofile, &l->nofile_set) < 0)
    return -1;
  if ((v = json_object_get(o, "cpus"))) {
    if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 4096)
      return bad(c, "limits.cpus", "must be a number of CPUs above 0 and at most 4096 (e.g. 0.5)");
    l->cpus = json_number_value(v);
    l->cpus_set = true;
  }
  return 0;
}

static int parse_caps(struct pctx *c, json_t *a, uint64_t *keep) {
  if (!json_is_array(a)) return bad(c, "capabilities", "must be an array of names such as \"CAP_NET_BIND_SERVICE\"");
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    char p[64];
    path_fmt(p, sizeof(p), "capabilities[%zu]", i);
    const char *s = json_string_value(v);
    cap_value_t cap;
    if (s == NULL || strncmp(s, "CAP_", 4) != 0 || cap_from_name(s, &cap) < 0 || cap < 0 || cap > 63)
      return bad(c, p, "unknown capability '%s' (write names such as \"CAP_NET_BIND_SERVICE\")", s ? s : "(not a string)");
    /* The workload runs as a non-root uid with securebits locked: a kept capability would need
       ambient capabilities, which kbox does not raise. Refuse rather than pretend. */
    return bad(c, p, "keeping %s is not supported: kbox drops every capability of the workload; remove it", s);
  }
  *keep = 0;
  return 0;
}

/* "net": {"allow": ["host", "*.domain:port", ...], "max_bytes": "100M"} */
static int parse_net(struct pctx *c, json_t *o, struct kbox_profile *p) {
  static const char *const keys[] = {"allow", "max_bytes", NULL};
  if (!json_is_object(o)) return bad(c, "net", "must be an object such as {\"allow\": [\"data.example.org\"]}");
  if (check_keys(c, "net", o, keys) < 0) return -1;
  json_t *a = json_object_get(o, "allow"), *v;
  if (a != NULL && !json_is_array(a)) return bad(c, "net.allow", "must be an array of rules such as \"*.example.org:8443\"");
  size_t i;
  json_array_foreach(a, i, v) {
    char jp[64];
    path_fmt(jp, sizeof(jp), "net.allow[%zu]", i);
    if (!json_is_string(v) || json_string_length(v) == 0 || strchr(json_string_value(v), ','))
      return bad(c, jp, "must be one rule as a string (host, *.domain, host:port or *.domain:port)");
    kbox_strv_add(&p->net_allow, json_string_value(v));
  }
  bool set = false;
  if ((v = json_object_get(o, "max_bytes")) && limit_size(c, "net.max_bytes", v, &p->net_max_bytes, &set) < 0) return -1;
  return 0;
}

static int parse_root(struct pctx *c, json_t *root, struct kbox_profile *p) {
  static const char *const keys[] = {"description", "seccomp", "capabilities", "limits", "net", "audit", "warm", NULL};
  if (!json_is_object(root)) return bad(c, "", "a profile must be a JSON object");
  if (check_keys(c, "", root, keys) < 0) return -1;
  json_t *v = json_object_get(root, "description");
  if (v != NULL) {
    if (!json_is_string(v)) return bad(c, "description", "must be a string");
    p->description = xstrdup(json_string_value(v));
  }
  if ((v = json_object_get(root, "seccomp")) == NULL)
    return bad(c, "seccomp", "missing (every profile needs a seccomp section; kbox never runs unfiltered by accident)");
  if (parse_seccomp(c, v, &p->seccomp) < 0) return -1;
  if ((v = json_object_get(root, "capabilities")) && parse_caps(c, v, &p->caps_keep) < 0) return -1;
  if ((v = json_object_get(root, "limits")) && parse_limits(c, v, &p->limits) < 0) return -1;
  if ((v = json_object_get(root, "net")) && parse_net(c, v, p) < 0) return -1;
  if ((v = json_object_get(root, "audit")) != NULL) {
    if (!json_is_string(v) || json_string_length(v) == 0) return bad(c, "audit", "must be a file name");
    p->audit = xstrdup(json_string_value(v));
  }
  if ((v = json_object_get(root, "warm")) != NULL) {
    if (!json_is_boolean(v)) return bad(c, "warm", "must be true or false (false: kernels always start cold)");
    p->no_warm = json_is_false(v);
  }
  return 0;
}

/* Finish: keep the profile on success, free it on failure. */
static int finish(struct pctx *c, json_t *root, struct kbox_profile *p, struct kbox_profile **out) {
  int rc = parse_root(c, root, p);
  json_decref(root);
  if (rc < 0) {
    kbox_profile_free(p);
    return -1;
  }
  *out = p;
  return 0;
}

int kbox_profile_parse(const char *label, const char *text, struct kbox_profile **out, kbox_error_t *err) {
  struct pctx c = {.label = label, .err = err};
  json_error_t je;
  json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL)
    return kbox_error_make(err, 0, "profile %s: line %d column %d: invalid JSON: %s", label, je.line, je.column, je.text);
  struct kbox_profile *p = xcalloc(1, sizeof(*p));
  p->path = xstrdup(label);
  return finish(&c, root, p, out);
}

int kbox_profile_parse_bytes(const char *path, const char *text, size_t len, struct kbox_profile **out,
                             kbox_error_t *err) {
  struct pctx c = {.label = path, .err = err};
  json_error_t je;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL)
    return kbox_error_make(err, 0, "profile %s: line %d column %d: invalid JSON: %s", path, je.line, je.column, je.text);
  struct kbox_profile *p = xcalloc(1, sizeof(*p));
  p->path = xstrdup(path);
  return finish(&c, root, p, out);
}

int kbox_profile_load(const char *path, struct kbox_profile **out, kbox_error_t *err) {
  struct pctx c = {.label = path, .err = err};
  json_error_t je;
  cleanup_free char *text = NULL;
  size_t len = 0;
  /* A regular file of bounded size: a FIFO would hang the start, /dev/zero would never end. */
  if (kbox_read_file(path, 4u << 20, &text, &len, err) < 0) return kbox_error_prefix(err, "--profile");
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL) {
    return kbox_error_make(err, 0, "profile %s: line %d column %d: invalid JSON: %s", path, je.line, je.column, je.text);
  }
  struct kbox_profile *p = xcalloc(1, sizeof(*p));
  p->path = xstrdup(path);
  return finish(&c, root, p, out);
}

void kbox_profile_free(struct kbox_profile *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->seccomp.n_rules; i++) {
    for (size_t k = 0; k < p->seccomp.rules[i].n_names; k++) free(p->seccomp.rules[i].names[k]);
    free(p->seccomp.rules[i].names);
  }
  free(p->seccomp.rules);
  free(p->description);
  free(p->path);
  kbox_strv_free(&p->net_allow);
  free(p->audit);
  free(p);
}
