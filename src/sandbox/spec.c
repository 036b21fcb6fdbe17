#include "sandbox/spec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"

void kbox_spec_init(struct kbox_spec *spec) {
  memset(spec, 0, sizeof(*spec));
  spec->disk_bytes = 512ULL << 20;
  spec->uid = 1000;
  spec->gid = 100;
  spec->memory_bytes = 1ULL << 30;
  spec->swap_bytes = 0;
  spec->pids = 256;
  spec->cpus = 1.0;
  spec->nofile = 1024;
  spec->max_message = 64ULL << 20;
  spec->host_uid = getuid();
  spec->host_gid = getgid();
}

void kbox_spec_free(struct kbox_spec *spec) {
  free(spec->id);
  kbox_strv_free(&spec->rootfs);
  free(spec->workdir);
  for (size_t i = 0; i < spec->n_binds; i++) {
    free(spec->binds[i].src);
    free(spec->binds[i].dst);
  }
  free(spec->binds);
  kbox_strv_free(&spec->env);
  free(spec->hostname);
  free(spec->report_path);
  kbox_strv_free(&spec->argv);
  free(spec->cgroup_parent);
  free(spec->profile);
  free(spec->connection_file);
  free(spec->kernel_ip);
  free(spec->kernel_transport);
  free(spec->kernel_cmd);
  kbox_strv_free(&spec->net_allow);
  free(spec->net_relay_sock);
  free(spec->audit_path);
  memset(spec, 0, sizeof(*spec));
}

void kbox_spec_add_bind(struct kbox_spec *spec, const char *src, const char *dst, bool ro) {
  spec->binds = realloc(spec->binds, (spec->n_binds + 1) * sizeof(*spec->binds));
  if (spec->binds == NULL) abort();
  spec->binds[spec->n_binds].src = strdup(src);
  spec->binds[spec->n_binds].dst = strdup(dst);
  spec->binds[spec->n_binds].ro = ro;
  spec->n_binds++;
}

int kbox_spec_parse_bind(struct kbox_spec *spec, const char *arg, kbox_error_t *err) {
  cleanup_free char *copy = strdup(arg);
  char *parts[3] = {NULL, NULL, NULL};
  size_t n = 0;
  for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok != NULL; tok = strtok_r(NULL, ":", &save)) {
    if (n == 3) return kbox_error_make(err, 0, "--bind: '%s' has too many ':' (use SRC[:DST][:ro])", arg);
    parts[n++] = tok;
  }
  if (n == 0 || parts[0][0] != '/')
    return kbox_error_make(err, 0, "--bind: '%s' must start with an absolute source path", arg);
  bool ro = false;
  const char *dst = parts[0];
  if (n >= 2) {
    const char *last = parts[n - 1];
    bool has_mode = strcmp(last, "ro") == 0 || strcmp(last, "rw") == 0;
    if (has_mode) ro = strcmp(last, "ro") == 0;
    if (n == 3 && !has_mode)
      return kbox_error_make(err, 0, "--bind: '%s': the third field must be 'ro' or 'rw'", arg);
    if (n == 3 || !has_mode) dst = parts[1];
  }
  if (dst[0] != '/')
    return kbox_error_make(err, 0, "--bind: destination '%s' must be an absolute path", dst);
  kbox_spec_add_bind(spec, parts[0], dst, ro);
  return 0;
}

/* A path that must exist as a directory. */
static int check_dir(const char *opt, const char *path, kbox_error_t *err) {
  struct stat st;
  if (stat(path, &st) < 0) return kbox_error_make(err, errno, "%s: %s", opt, path);
  if (!S_ISDIR(st.st_mode)) return kbox_error_make(err, 0, "%s: %s is not a directory", opt, path);
  return 0;
}

/* Paths inside the sandbox must be absolute and free of "..": they are created under the new root. */
static int check_inner_path(const char *opt, const char *path, kbox_error_t *err) {
  if (path[0] != '/') return kbox_error_make(err, 0, "%s: %s is not an absolute path", opt, path);
  if (strstr(path, "/../") != NULL || (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0))
    return kbox_error_make(err, 0, "%s: %s must not contain '..'", opt, path);
  if (strcmp(path, "/") == 0) return kbox_error_make(err, 0, "%s: cannot mount over /", opt);
  return 0;
}

int kbox_spec_validate(struct kbox_spec *spec, kbox_error_t *err) {
  for (size_t i = 0; i < spec->rootfs.n; i++)
    if (check_dir("--rootfs", spec->rootfs.v[i], err) < 0)
      return kbox_error_hint(err, "build the image with 'kbox image build' or pass an existing directory");
  if (spec->workdir != NULL) {
    if (check_dir("--workdir", spec->workdir, err) < 0) return -1;
    if (check_inner_path("--workdir", spec->workdir, err) < 0) return -1;
  }
  for (size_t i = 0; i < spec->n_binds; i++) {
    struct stat st;
    if (stat(spec->binds[i].src, &st) < 0)
      return kbox_error_make(err, errno, "--bind: source %s", spec->binds[i].src);
    if (check_inner_path("--bind", spec->binds[i].dst, err) < 0) return -1;
  }
  /* No CMD: run a Jupyter kernel (src/kernel); kernel options make no sense with a CMD. */
  spec->kernel_mode = spec->argv.n == 0;
  if (!spec->kernel_mode && (spec->connection_file || spec->kernel_ip || spec->kernel_transport ||
                             spec->port_lo || spec->kernel_cmd || spec->exec_timeout_ms || spec->idle_timeout_ms))
    return kbox_error_make(err, 0, "--connection-file, --ip, --transport, --port-range, --kernel-cmd, --exec-timeout "
                                   "and --idle-timeout apply to kernel mode only (give no CMD to start a kernel)");
  return 0;
}
