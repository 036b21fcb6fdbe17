#include "kernel/kernel_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>

#include "util/alloc.h"
#include "util/cleanup.h"

/* IPKernelApp's flags (no value) and aliases (one value) that are safe to pass on as they are. */
static const char *const pass_flags[] = {
    "autoindent", "automagic", "color-info", "debug", "ignore-cwd", "init", "matplotlib", "no-autoindent",
    "no-automagic", "no-color-info", "no-ignore-cwd", "no-pdb", "no-pprint", "nosep", "pdb", "pprint", "pylab",
    "quiet", "trio-loop", "no-stderr", "no-stdout", "secure", "no-secure", NULL};
static const char *const pass_aliases[] = {"autocall", "c", "cache-size", "colors", "ext", "gui", "log-level", "m",
                                           "matplotlib", "pylab", "profile", "ident", "user", NULL};
/* Aliases whose value is a file: honoured only inside a directory the sandbox sees at the same path. */
static const char *const path_aliases[] = {"config", "logfile", "logappend", NULL};
/* The kernel's channels and session belong to kbox's broker. */
static const char *const channel_aliases[] = {"ip", "transport", "shell", "iopub", "stdin", "control", "hb", "f",
                                              "keyfile", "connection-file", "existing", NULL};
/* Traits (any class) that name the kernel's channels, key, or its profile location. */
static const char *const refused_traits[] = {"ip", "transport", "shell_port", "iopub_port", "stdin_port",
                                             "control_port", "hb_port", "connection_file", "connection_dir",
                                             "parent_handle", "interrupt", "key", "keyfile", "signature_scheme",
                                             "ipython_dir", "profile_dir", "location", NULL};

static bool in_list(const char *const *list, const char *s, size_t n) {
  for (size_t i = 0; list[i] != NULL; i++)
    if (strlen(list[i]) == n && strncmp(list[i], s, n) == 0) return true;
  return false;
}

static int refuse(kbox_error_t *err, const char *arg, const char *why) {
  return kbox_error_make(err, 0, "kernel argument '%s' refused: %s", arg, why);
}

/* Is path (absolute) at or below dir? */
static bool below(const char *path, const char *dir) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Does the sandbox see host path p at the same path (profile/ipython dirs, workdir, same-path binds)? */
static bool visible_at_same_path(const struct kbox_spec *s, const char *p) {
  for (size_t i = 0; i < s->sandbox.overlays.n; i++)
    if (below(p, s->sandbox.overlays.v[i])) return true;
  if (s->sandbox.workdir != NULL && below(p, s->sandbox.workdir)) return true;
  for (size_t i = 0; i < s->sandbox.n_binds; i++)
    if (strcmp(s->sandbox.binds[i].src, s->sandbox.binds[i].dst) == 0 && below(p, s->sandbox.binds[i].src)) return true;
  return false;
}

/* A value naming a host path the kernel would not see (after quotes and list brackets). */
static bool names_hidden_path(const struct kbox_spec *s, const char *value) {
  value += strspn(value, " [('\"u");
  if (value[0] == '~') return true;
  if (value[0] != '/') return false;
  cleanup_free char *p = xstrndup(value, strcspn(value, "'\",])"));
  return strstr(p, "/..") != NULL || !visible_at_same_path(s, p);
}

/* --profile-dir / --ipython-dir DIR: the host directory must exist; it is shown at its real path. */
static int map_dir(struct kbox_spec *s, const char *name, const char *value, struct kbox_strv *out, kbox_error_t *err) {
  cleanup_free char *real = realpath(value, NULL);
  struct stat st;
  if (real == NULL || stat(real, &st) < 0)
    return kbox_error_make(err, errno, "kernel argument '--%s' refused: cannot show %s in the sandbox", name, value);
  if (!S_ISDIR(st.st_mode)) return kbox_error_make(err, 0, "kernel argument '--%s' refused: %s is not a directory", name, value);
  if (strcmp(real, "/") == 0) return refuse(err, value, "the host's root cannot be a profile directory");
  bool known = false;
  for (size_t i = 0; i < s->sandbox.overlays.n; i++) known |= strcmp(s->sandbox.overlays.v[i], real) == 0;
  if (!known) kbox_strv_add(&s->sandbox.overlays, real);
  char *arg = NULL;
  arg = xasprintf("--%s=%s", name, real);
  kbox_strv_add_owned(out, arg);
  return 0;
}

/* --Class.trait=value (or --Class.trait value). */
static int check_trait(const struct kbox_spec *s, const char *arg, const char *name, const char *value,
                       struct kbox_strv *out, kbox_error_t *err) {
  const char *dot = strrchr(name, '.');
  size_t n = strcspn(name, "=");
  const char *trait = dot + 1;
  size_t tn = (size_t)(name + n - trait);
  if (tn == 0 || dot == name) return refuse(err, arg, "not of the form --Class.trait=value");
  if (strncmp(name, "Session.", 8) == 0 || in_list(refused_traits, trait, tn))
    return refuse(err, arg, "the kernel's channels, key and profile location are kbox's (use --profile-dir DIR for a profile)");
  if (names_hidden_path(s, value))
    return refuse(err, arg, "it names a host path the sandbox does not show at the same path (use --profile-dir, --workdir or --bind)");
  char *a = NULL;
  a = xasprintf("--%.*s=%s", (int)n, name, value);
  kbox_strv_add_owned(out, a);
  return 0;
}

/* Check and rewrite one argument (and its value, taken from argv[*i + 1] when it has none). */
static int check_one(struct kbox_spec *s, char **argv, size_t argc, size_t *i, bool (*is_run_option)(const char *),
                     struct kbox_strv *out, kbox_error_t *err) {
  const char *arg = argv[*i];
  size_t dashes = strncmp(arg, "--", 2) == 0 ? 2 : arg[0] == '-' ? 1 : 0;
  if (dashes == 0 || arg[dashes] == '\0')
    return refuse(err, arg, "kernel arguments are options (a command goes after '--' without kernel options)");
  const char *name = arg + dashes;
  size_t n = strcspn(name, "=");
  const char *eq = name[n] == '=' ? name + n + 1 : NULL;
  bool trait = memchr(name, '.', n) != NULL;
  bool aliased = trait || in_list(pass_aliases, name, n) || in_list(path_aliases, name, n) ||
                 (n == 11 && strncmp(name, "profile-dir", n) == 0) || (n == 11 && strncmp(name, "ipython-dir", n) == 0);
  if (in_list(channel_aliases, name, n))
    return refuse(err, arg, "the kernel's channels and key are kbox's broker (give --ip/--transport to kbox run, before --connection-file)");
  if (strncmp(name, "help", 4) == 0 || (n == 7 && strncmp(name, "version", n) == 0) || strncmp(name, "show-config", 11) == 0)
    return refuse(err, arg, "it makes the kernel print and exit instead of starting");
  if (eq == NULL && in_list(pass_flags, name, n)) {
    kbox_strv_add(out, arg);
    return 0;
  }
  if (!aliased) {
    cleanup_free char *opt = xstrndup(name, n);
    if (dashes == 2 && is_run_option != NULL && is_run_option(opt))
      return refuse(err, arg, "it is a kbox run option: give it before --connection-file (or to 'kbox kernelspec install')");
    return refuse(err, arg, "unknown (kbox passes --profile-dir, --ipython-dir, --Class.trait=value and IPKernelApp's flags)");
  }
  const char *value = eq;
  if (value == NULL) {
    if (*i + 1 >= argc) return kbox_error_make(err, 0, "kernel argument '%s' needs a value", arg);
    value = argv[++*i];
  }
  cleanup_free char *bare = xstrndup(name, n);
  if (strcmp(bare, "profile-dir") == 0 || strcmp(bare, "ipython-dir") == 0) return map_dir(s, bare, value, out, err);
  if (trait) return check_trait(s, arg, name, value, out, err);
  if (strcmp(bare, "profile") == 0 && strchr(value, '/') != NULL)
    return refuse(err, arg, "--profile takes a profile name; give a directory with --profile-dir");
  if (in_list(path_aliases, name, n) && names_hidden_path(s, value))
    return refuse(err, arg, "it names a host path the sandbox does not show at the same path (use --profile-dir, --workdir or --bind)");
  if (dashes == 1) { /* -c CODE, -m MODULE */
    char flag[3] = {'-', arg[1], '\0'};
    kbox_strv_add(out, flag);
    kbox_strv_add(out, value);
    return 0;
  }
  char *a = NULL;
  a = xasprintf("--%s=%s", bare, value);
  kbox_strv_add_owned(out, a);
  return 0;
}

/* The directory of a --profile-dir/--ipython-dir argument at argv[i], or NULL. */
static const char *dir_value(char **argv, size_t argc, size_t i) {
  const char *a = argv[i];
  if (strncmp(a, "--profile-dir", 13) != 0 && strncmp(a, "--ipython-dir", 13) != 0) return NULL;
  if (a[13] == '=') return a + 14;
  return a[13] == '\0' && i + 1 < argc ? argv[i + 1] : NULL;
}

int kbox_kernel_args_check(struct kbox_spec *spec, bool (*is_run_option)(const char *name), kbox_error_t *err) {
  if (spec->kernel.args.n == 0) return 0;
  char **av = spec->kernel.args.v;
  size_t ac = spec->kernel.args.n;
  /* Directories first, so that a trait value inside a profile directory counts as visible. */
  for (size_t i = 0; i < ac; i++) {
    const char *d = dir_value(av, ac, i);
    cleanup_free char *real = d != NULL ? realpath(d, NULL) : NULL;
    struct stat st;
    if (real != NULL && strcmp(real, "/") != 0 && stat(real, &st) == 0 && S_ISDIR(st.st_mode)) kbox_strv_add(&spec->sandbox.overlays, real);
  }
  struct kbox_strv out = {0};
  for (size_t i = 0; i < ac; i++)
    if (check_one(spec, av, ac, &i, is_run_option, &out, err) < 0) {
      kbox_strv_free(&out);
      return -1;
    }
  kbox_strv_free(&spec->kernel.args);
  spec->kernel.args = out;
  return 0;
}
