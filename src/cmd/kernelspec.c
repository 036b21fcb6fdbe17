/* kbox kernelspec install/list/remove: Jupyter kernelspecs whose argv runs `kbox run` in kernel
   mode, so any Jupyter client (jupyter_client, nbclient, JupyterLab, pybox) gets a sandboxed kernel. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run_opts.h"
#include "kernel/kernel_args.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/parse.h"

#define SYSTEM_DIR "/usr/local/share/jupyter"

static void ks_usage(FILE *out) {
  fprintf(out,
          "Usage: kbox kernelspec install [--name NAME] [--display-name TEXT] [--user | --prefix DIR] [RUN OPTIONS...]\n"
          "       kbox kernelspec list\n"
          "       kbox kernelspec remove [--user | --prefix DIR] NAME\n"
          "Install a Jupyter kernelspec that starts a sandboxed kernel with 'kbox run RUN OPTIONS... --connection-file\n"
          "{connection_file}' (see 'kbox run --help'). --name python3 replaces the default Python kernel, so\n"
          "clients asking for \"python3\" are sandboxed without a code change. Default name 'kbox', installed in\n"
          SYSTEM_DIR "/kernels (--user: the user's Jupyter data dir; --prefix DIR: DIR/share/jupyter/kernels).\n"
          "What a client appends to the argv (extra_arguments, e.g. --profile-dir DIR) reaches the kernel.\n\n"
          "Examples:\n"
          "  kbox kernelspec install --user --name python3 --workdir-from-cwd --memory 2G --idle-timeout 3600\n"
          "  kbox kernelspec install --prefix /opt/env --rootfs / --kernel-cmd '/usr/bin/python3 -m ipykernel_launcher -f {connection_file}'\n"
          "  kbox kernelspec list\n"
          "  kbox kernelspec remove --user python3\n");
}

/* The user's Jupyter data dir ($JUPYTER_DATA_DIR, $XDG_DATA_HOME/jupyter, ~/.local/share/jupyter). */
static char *user_data_dir(void) {
  char *out = NULL;
  const char *j = getenv("JUPYTER_DATA_DIR"), *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
  if (j != NULL && j[0] != '\0') out = xstrdup(j);
  else if (x != NULL && x[0] != '\0') out = xasprintf("%s/jupyter", x);
  else out = xasprintf("%s/.local/share/jupyter", h ? h : "/");
  return out;
}

struct ks_opts {
  const char *name, *display, *prefix;
  bool user;
  struct kbox_strv run; /* run options, "run" first */
};

/* Split argv into kernelspec options and run options. */
static int parse(int argc, char **argv, struct ks_opts *o, bool *help, kbox_error_t *err) {
  kbox_strv_add(&o->run, "run");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **dst = strcmp(a, "--name") == 0 ? &o->name : strcmp(a, "--display-name") == 0 ? &o->display
                     : strcmp(a, "--prefix") == 0 ? &o->prefix : NULL;
    if (dst != NULL) {
      if (i + 1 >= argc) return kbox_error_make(err, 0, "%s needs a value (see 'kbox kernelspec --help')", a);
      *dst = argv[++i];
    } else if (strcmp(a, "--user") == 0) {
      o->user = true;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      *help = true;
    } else {
      kbox_strv_add(&o->run, a);
    }
  }
  if (o->user && o->prefix) return kbox_error_make(err, 0, "--user and --prefix exclude each other");
  if (o->name == NULL) o->name = "kbox";
  return kbox_validate_id("--name", o->name, err);
}

/* Directory holding the kernels/ folder for --user/--prefix/system. */
static char *data_dir(const struct ks_opts *o) {
  if (o->user) return user_data_dir();
  return o->prefix != NULL ? xasprintf("%s/share/jupyter", o->prefix) : xstrdup(SYSTEM_DIR);
}

/* A run option for kernel.json: {connection_file} inside a value (--kernel-cmd) becomes
   {kbox_connection_file}, which jupyter_client leaves alone and kbox reads as the same thing. */
static json_t *kernel_cmd_arg(const char *arg) {
  const char *at = strstr(arg, "{connection_file}");
  if (at == NULL) return json_string(arg);
  char *s = xasprintf("%.*s{kbox_connection_file}%s", (int)(at - arg), arg, at + strlen("{connection_file}"));
  json_t *j = json_string(s);
  free(s);
  return j;
}

static int install(struct ks_opts *o, kbox_error_t *err) {
  /* Check the run options now rather than at the first kernel start. */
  struct kbox_spec spec;
  kbox_spec_init(&spec);
  bool help = false;
  int rc = kbox_run_opts_parse((int)o->run.n, o->run.v, &spec, &help, err);
  bool has_cmd = spec.sandbox.argv.n > 0;
  size_t n_kargs = spec.kernel.args.n; /* a suffix of o->run: they go after {connection_file} */
  if (rc == 0) rc = kbox_kernel_args_check(&spec, NULL, err);
  kbox_spec_free(&spec);
  if (rc < 0) return kbox_error_prefix(err, "kernelspec run options");
  if (has_cmd) return kbox_error_make(err, 0, "a kernelspec starts a kernel: give run options only, no command");
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n < 0) return kbox_error_make(err, errno, "cannot find kbox's own path");
  self[n] = '\0';
  json_t *av = json_array();
  json_array_append_new(av, json_string(self));
  for (size_t i = 0; i < o->run.n - n_kargs; i++) json_array_append_new(av, kernel_cmd_arg(o->run.v[i]));
  /* Last, so that what a client appends (extra_arguments) are the kernel's arguments. */
  json_array_append_new(av, json_string("--connection-file"));
  json_array_append_new(av, json_string("{connection_file}"));
  for (size_t i = o->run.n - n_kargs; i < o->run.n; i++) json_array_append_new(av, json_string(o->run.v[i]));
  json_t *ks = json_pack("{s:o, s:s, s:s, s:s, s:{s:b}}", "argv", av, "display_name",
                         o->display ? o->display : "Python 3 (kbox sandbox)", "language", "python",
                         "interrupt_mode", "signal", "metadata", "kbox", 1);
  cleanup_free char *base = data_dir(o);
  cleanup_free char *dir = xasprintf("%s/kernels/%s", base, o->name);
  cleanup_free char *file = xasprintf("%s/kernel.json", dir);
  if (kbox_mkdir_p(dir, 0755, err) < 0) {
    json_decref(ks);
    return kbox_error_hint(err, "use --user or --prefix DIR for a directory you can write");
  }
  rc = json_dump_file(ks, file, JSON_INDENT(2));
  json_decref(ks);
  if (rc < 0) return kbox_error_make(err, errno, "writing %s", file);
  printf("installed kernelspec %s in %s\n", o->name, dir);
  return 0;
}

/* Is DIR/kernel.json a kbox kernelspec? */
static bool is_kbox_spec(const char *dir) {
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/kernel.json", dir);
  json_t *j = json_load_file(path, 0, NULL);
  bool yes = json_is_true(json_object_get(json_object_get(j, "metadata"), "kbox"));
  json_decref(j);
  return yes;
}

/* Kernel search path: $JUPYTER_PATH entries, the user dir, then the system dirs. */
static void search_dirs(struct kbox_strv *out) {
  const char *jp = getenv("JUPYTER_PATH");
  if (jp != NULL) {
    cleanup_free char *copy = xstrdup(jp);
    char *save = NULL;
    for (char *t = strtok_r(copy, ":", &save); t != NULL; t = strtok_r(NULL, ":", &save)) kbox_strv_add(out, t);
  }
  kbox_strv_add_owned(out, user_data_dir());
  kbox_strv_add(out, SYSTEM_DIR);
  kbox_strv_add(out, "/usr/share/jupyter");
}

static int list(void) {
  struct kbox_strv dirs = {0};
  search_dirs(&dirs);
  for (size_t i = 0; i < dirs.n; i++) {
    char kd[PATH_MAX];
    snprintf(kd, sizeof(kd), "%s/kernels", dirs.v[i]);
    DIR *d = opendir(kd);
    if (d == NULL) continue;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
      char sub[PATH_MAX];
      if (e->d_name[0] == '.') continue;
      snprintf(sub, sizeof(sub), "%.2000s/%.255s", kd, e->d_name);
      if (is_kbox_spec(sub)) printf("%-20s %s\n", e->d_name, sub);
    }
    closedir(d);
  }
  kbox_strv_free(&dirs);
  return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static int remove_spec(struct ks_opts *o, kbox_error_t *err) {
  if (o->run.n != 2) return kbox_error_make(err, 0, "usage: kbox kernelspec remove [--user | --prefix DIR] NAME");
  const char *name = o->run.v[1];
  if (kbox_validate_id("NAME", name, err) < 0) return -1;
  cleanup_free char *base = data_dir(o);
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/kernels/%s", base, name);
  if (access(dir, F_OK) < 0) return kbox_error_make(err, errno, "kernelspec %s", dir);
  if (!is_kbox_spec(dir)) return kbox_error_make(err, 0, "%s is not a kbox kernelspec; not removing it", dir);
  if (nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) < 0) return kbox_error_make(err, errno, "removing %s", dir);
  printf("removed kernelspec %s\n", dir);
  return 0;
}

int kbox_cmd_kernelspec(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    ks_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? KBOX_EXIT_RUNTIME : 0;
  }
  struct ks_opts o = {0};
  bool help = false;
  const char *sub = argv[1];
  int rc = parse(argc - 1, argv + 1, &o, &help, &err);
  if (rc == 0 && help) ks_usage(stdout);
  else if (rc == 0 && strcmp(sub, "install") == 0) rc = install(&o, &err);
  else if (rc == 0 && strcmp(sub, "list") == 0) rc = list();
  else if (rc == 0 && strcmp(sub, "remove") == 0) rc = remove_spec(&o, &err);
  else if (rc == 0) rc = kbox_error_make(&err, 0, "unknown kernelspec action '%s' (install, list, remove)", sub);
  kbox_strv_free(&o.run);
  return rc < 0 ? kbox_error_report(&err) : 0;
}
