#include "spec/spec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/parse.h"

void kbox_spec_init(struct kbox_spec *spec) {
  memset(spec, 0, sizeof(*spec));
  spec->limits.disk_bytes = 512ULL << 20;
  spec->sandbox.uid = 1000;
  spec->sandbox.gid = 100;
  spec->limits.memory_bytes = 1ULL << 30;
  spec->limits.swap_bytes = 0;
  spec->limits.pids = 256;
  spec->limits.cpus = 1.0;
  spec->limits.nofile = 1024;
  spec->kernel.max_message = 64ULL << 20;
  spec->host_uid = getuid();
  spec->host_gid = getgid();
}

void kbox_spec_free(struct kbox_spec *spec) {
  free(spec->id);
  kbox_strv_free(&spec->sandbox.rootfs);
  free(spec->sandbox.workdir);
  for (size_t i = 0; i < spec->sandbox.n_binds; i++) {
    free(spec->sandbox.binds[i].src);
    free(spec->sandbox.binds[i].dst);
  }
  free(spec->sandbox.binds);
  kbox_strv_free(&spec->sandbox.env);
  free(spec->sandbox.hostname);
  free(spec->report_path);
  kbox_strv_free(&spec->sandbox.argv);
  free(spec->limits.cgroup_parent);
  free(spec->sec.profile);
  free(spec->kernel.connection_file);
  free(spec->kernel.ip);
  free(spec->kernel.transport);
  free(spec->kernel.cmd);
  kbox_strv_free(&spec->kernel.args);
  kbox_strv_free(&spec->sandbox.overlays);
  kbox_strv_free(&spec->sandbox.net_allow);
  free(spec->sandbox.net_relay_sock);
  free(spec->audit_path);
  memset(spec, 0, sizeof(*spec));
}

void kbox_spec_add_bind(struct kbox_spec *spec, const char *src, const char *dst, bool ro) {
  spec->sandbox.binds = xrealloc(spec->sandbox.binds, (spec->sandbox.n_binds + 1) * sizeof(*spec->sandbox.binds));
  spec->sandbox.binds[spec->sandbox.n_binds].src = xstrdup(src);
  spec->sandbox.binds[spec->sandbox.n_binds].dst = xstrdup(dst);
  spec->sandbox.binds[spec->sandbox.n_binds].ro = ro;
  spec->sandbox.n_binds++;
}

/* Paths the sandbox mounts itself (sandbox/mounts.c: /proc, /sys, /dev with its masked and
   read-only paths; the kernel run dir of kernel/launch.h; the --startup-dir target of sandbox/image.h).
   A bind at or below one would replace what kbox put there (a host /proc over the masked one). */
static const char *const reserved_below[] = {"/proc", "/sys", "/dev", "/run/kbox", "/etc/kbox/user-startup", NULL};
/* The disk-capped /tmp: binding below it is fine, replacing it is not. */
static const char *const reserved_exact[] = {"/tmp", NULL};

/* Rewrite an absolute path in place without "//", "/./" and trailing "/" (".." is refused elsewhere). */
static void normalize_path(char *p) {
  char *w = p;
  for (const char *r = p; *r != '\0';) {
    if (r[0] == '/' && (r[1] == '/' || (r[1] == '.' && (r[2] == '/' || r[2] == '\0')))) {
      r += r[1] == '/' ? 1 : 2;
      continue;
    }
    *w++ = *r++;
  }
  *w = '\0';
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
  if (n == 0) strcpy(p, "/");
}

/* Is path P (normalized) equal to or below DIR? */
static bool path_within(const char *p, const char *dir) {
  size_t n = strlen(dir);
  return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* A --bind destination that would cover something the sandbox mounts itself. */
static int check_bind_dst(const char *dst, kbox_error_t *err) {
  for (size_t i = 0; reserved_below[i] != NULL; i++)
    if (path_within(dst, reserved_below[i]))
      return kbox_error_make(err, 0, "--bind: destination %s is %s%s, which the sandbox mounts itself; bind elsewhere "
                             "(e.g. /mnt/data)", dst, strcmp(dst, reserved_below[i]) == 0 ? "" : "below ", reserved_below[i]);
  for (size_t i = 0; reserved_exact[i] != NULL; i++)
    if (strcmp(dst, reserved_exact[i]) == 0)
      return kbox_error_make(err, 0, "--bind: destination %s is the sandbox's own size-capped %s; bind below it "
                             "(e.g. %s/data) or elsewhere", dst, dst, dst);
  return 0;
}

int kbox_spec_parse_bind(struct kbox_spec *spec, const char *arg, kbox_error_t *err) {
  cleanup_free char *copy = xstrdup(arg);
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
  cleanup_free char *norm = xstrdup(dst);
  normalize_path(norm);
  if (check_bind_dst(norm, err) < 0) return -1;
  kbox_spec_add_bind(spec, parts[0], norm, ro);
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

/* A file kbox writes at the end (--report, --connection-file): it must be writable where it is
   named, checked before anything starts so that the result is not lost. */
static int check_output_file(const char *opt, const char *path, kbox_error_t *err) {
  struct stat st;
  if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    /* A symlink or special file (/dev/stderr, /proc/self/fd/N) is written in place, through it. */
    if (stat(path, &st) < 0) return kbox_error_make(err, errno, "%s: %s", opt, path);
    if (S_ISDIR(st.st_mode)) return kbox_error_make(err, 0, "%s: %s is a directory (name a file in it)", opt, path);
    if (access(path, W_OK) < 0) return kbox_error_make(err, errno, "%s: cannot write %s", opt, path);
    return 0;
  }
  /* A regular file or a new one: written as a temporary file in its directory, then renamed. */
  cleanup_free char *copy = xstrdup(path);
  char *slash = strrchr(copy, '/');
  const char *dir = slash == NULL ? "." : slash == copy ? "/" : (*slash = '\0', copy);
  if (stat(dir, &st) < 0) return kbox_error_make(err, errno, "%s: the directory %s of %s", opt, dir, path);
  if (!S_ISDIR(st.st_mode)) return kbox_error_make(err, 0, "%s: %s (in %s) is not a directory", opt, dir, path);
  if (access(dir, W_OK) < 0) return kbox_error_make(err, errno, "%s: cannot create files in %s", opt, dir);
  return 0;
}

/* An existing --connection-file is read (kernelspec launch): a regular file only (a FIFO would hang). */
static int check_connection_file(const char *path, kbox_error_t *err) {
  struct stat st;
  if (stat(path, &st) < 0) return errno == ENOENT ? check_output_file("--connection-file", path, err)
                                                  : kbox_error_make(err, errno, "--connection-file: %s", path);
  int fd = kbox_open_regular(path, err);
  if (fd < 0) return kbox_error_prefix(err, "--connection-file");
  close(fd);
  return 0;
}

/* --cgroup-parent: an absolute cgroup path without "." or ".." components. */
static int check_cgroup_parent(const char *p, kbox_error_t *err) {
  char q[300];
  if (p[0] != '/')
    return kbox_error_make(err, 0, "--cgroup-parent: '%s' must be an absolute cgroup path (e.g. /kbox.slice)",
                           kbox_quote(p, q, sizeof(q)));
  for (const char *c = p; *c != '\0';) {
    while (*c == '/') c++;
    size_t len = strcspn(c, "/");
    if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
      return kbox_error_make(err, 0, "--cgroup-parent: '%s' must not contain '.' or '..' components",
                             kbox_quote(p, q, sizeof(q)));
    for (size_t i = 0; i < len; i++)
      if ((unsigned char)c[i] < 0x20 || c[i] == 0x7f)
        return kbox_error_make(err, 0, "--cgroup-parent: '%s' contains control characters", kbox_quote(p, q, sizeof(q)));
    c += len;
  }
  return 0;
}

int kbox_spec_validate(struct kbox_spec *spec, kbox_error_t *err) {
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++)
    if (check_dir("--rootfs", spec->sandbox.rootfs.v[i], err) < 0)
      return kbox_error_hint(err, "build the image with 'kbox image build' or pass an existing directory");
  if (spec->sandbox.workdir != NULL) {
    if (check_dir("--workdir", spec->sandbox.workdir, err) < 0) return -1;
    if (check_inner_path("--workdir", spec->sandbox.workdir, err) < 0) return -1;
  }
  for (size_t i = 0; i < spec->sandbox.n_binds; i++) {
    struct stat st;
    if (stat(spec->sandbox.binds[i].src, &st) < 0)
      return kbox_error_make(err, errno, "--bind: source %s", spec->sandbox.binds[i].src);
    if (check_inner_path("--bind", spec->sandbox.binds[i].dst, err) < 0) return -1;
  }
  if (spec->report_path != NULL && strcmp(spec->report_path, "-") != 0 &&
      check_output_file("--report", spec->report_path, err) < 0)
    return -1;
  if (spec->limits.cgroup_parent != NULL && check_cgroup_parent(spec->limits.cgroup_parent, err) < 0) return -1;
  if (spec->kernel.connection_file != NULL && check_connection_file(spec->kernel.connection_file, err) < 0) return -1;
  bool ipc = spec->kernel.transport != NULL && strcmp(spec->kernel.transport, "ipc") == 0;
  if (spec->kernel.ip != NULL && !ipc && kbox_validate_ip("--ip", spec->kernel.ip, err) < 0) return -1;
  /* No CMD: run a Jupyter kernel (src/kernel); kernel options make no sense with a CMD. */
  spec->kernel.mode = spec->sandbox.argv.n == 0;
  if (!spec->kernel.mode && (spec->kernel.connection_file || spec->kernel.ip || spec->kernel.transport ||
                             spec->kernel.port_lo || spec->kernel.cmd || spec->kernel.exec_timeout_ms || spec->kernel.idle_timeout_ms))
    return kbox_error_make(err, 0, "--connection-file, --ip, --transport, --port-range, --kernel-cmd, --exec-timeout "
                                   "and --idle-timeout apply to kernel mode only (give no CMD to start a kernel)");
  return 0;
}
