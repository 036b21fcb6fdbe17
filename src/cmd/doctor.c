/* `kbox doctor`: probe what this host allows and what each missing piece disables. */
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/seccomp.h>

#include "cmd/commands.h"
#include "sandbox/cgroup_probe.h"
#include "util/cleanup.h"
#include "util/fs.h"

struct check {
  const char *name;
  bool ok;
  bool required; /* kbox run cannot fully isolate without it */
  char detail[256];
};

/* Run fn in a forked child (so namespace experiments never touch kbox); true if it exits 0. */
static bool in_child(int (*fn)(void *), void *arg, int *child_errno) {
  int pfd[2];
  if (pipe(pfd) < 0) return false;
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    close(pfd[0]);
    int rc = fn(arg);
    int e = errno;
    if (write(pfd[1], &e, sizeof(e)) < 0) _exit(2);
    _exit(rc == 0 ? 0 : 1);
  }
  close(pfd[1]);
  int e = 0, st = 0;
  if (read(pfd[0], &e, sizeof(e)) != sizeof(e)) e = 0;
  close(pfd[0]);
  waitpid(pid, &st, 0);
  if (child_errno) *child_errno = e;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int try_unshare(void *flags) { return unshare((int)(long)flags); }

/* As an unprivileged user (nobody), can we create a user namespace? */
static int try_unpriv_userns(void *unused) {
  if (getuid() == 0 && (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)) return -1;
  return unshare(CLONE_NEWUSER);
}

/* Mount an overlay inside a new user+mount namespace. */
static int try_overlay(void *unused) {
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) return -1;
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return -1;
  if (mount("t", "/tmp", "tmpfs", 0, NULL) < 0) return -1;
  mkdir("/tmp/u", 0755); mkdir("/tmp/w", 0755); mkdir("/tmp/m", 0755); mkdir("/tmp/l", 0755);
  return mount("overlay", "/tmp/m", "overlay", 0, "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w,userxattr");
}

/* An idmapped copy of /tmp (needs privileges in the initial namespace). */
static int try_idmap(void *unused) {
  int fd = (int)syscall(SYS_open_tree, AT_FDCWD, "/tmp", OPEN_TREE_CLONE);
  if (fd < 0) return -1;
  int ns = open("/proc/self/ns/user", O_RDONLY);
  struct mount_attr a = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns};
  /* Our own (initial) namespace is refused with EINVAL by design; any other error means no support. */
  long rc = syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &a, sizeof(a));
  return (rc < 0 && errno == EINVAL) ? 0 : -1;
}

static void add(struct check *c, size_t *n, const char *name, bool ok, bool required, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add(struct check *c, size_t *n, const char *name, bool ok, bool required, const char *fmt, ...) {
  c[*n].name = name;
  c[*n].ok = ok;
  c[*n].required = required;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c[*n].detail, sizeof(c[*n].detail), fmt, ap);
  va_end(ap);
  (*n)++;
}

static size_t run_checks(struct check *c) {
  size_t n = 0;
  int e = 0;
  bool userns = in_child(try_unshare, (void *)(long)CLONE_NEWUSER, &e);
  add(c, &n, "user namespaces", userns, true, userns ? "available" : "refused (%s): kbox run cannot start; check sysctl user.max_user_namespaces", strerror(e));
  bool unpriv = in_child(try_unpriv_userns, NULL, &e);
  add(c, &n, "unprivileged user namespaces", unpriv, false, unpriv ? "available: rootless kbox works" : "refused (%s): kbox must run as root", strerror(e));
  static const struct { const char *name; long flag; } nss[] = {
      {"pid namespace", CLONE_NEWPID}, {"mount namespace", CLONE_NEWNS}, {"network namespace", CLONE_NEWNET},
      {"ipc namespace", CLONE_NEWIPC}, {"uts namespace", CLONE_NEWUTS}, {"cgroup namespace", CLONE_NEWCGROUP}};
  for (size_t i = 0; i < sizeof(nss) / sizeof(nss[0]); i++) {
    bool ok = in_child(try_unshare, (void *)(CLONE_NEWUSER | nss[i].flag), &e);
    add(c, &n, nss[i].name, ok, true, ok ? "available" : "refused (%s): that isolation is missing", strerror(e));
  }
  bool ovl = in_child(try_overlay, NULL, &e);
  add(c, &n, "overlayfs in a user namespace", ovl, true, ovl ? "works" : "fails (%s): no overlay root", strerror(e));
  bool idm = getuid() == 0 && in_child(try_idmap, NULL, &e);
  add(c, &n, "idmapped mounts", idm, false, idm ? "supported: root-mode workdir files keep their owner" : "unavailable: as root, --workdir needs them (run kbox as the workdir's owner instead)");
  bool sc = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 && access("/proc/sys/kernel/seccomp/actions_avail", R_OK) == 0;
  add(c, &n, "seccomp filters", sc, true, sc ? "available" : "unavailable: no syscall filtering");
  int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  add(c, &n, "clone3 / pidfd", pfd >= 0, true, pfd >= 0 ? "available" : "missing (Linux >= 5.5 needed)");
  if (pfd >= 0) close(pfd);
  char mode[256];
  bool cg = kbox_cgroup_probe_summary(mode, sizeof(mode));
  add(c, &n, "cgroups", cg, false, "%s", mode);
  return n;
}

int kbox_cmd_doctor(int argc, char **argv) {
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) json = true;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("Usage: kbox doctor [--json]\nProbe user namespaces, each namespace type, overlayfs in a user namespace,\n"
             "cgroup mode and controllers, seccomp, idmapped mounts and clone3/pidfd.\n"
             "Exit 0 when 'kbox run' can fully isolate here, 1 otherwise.\n\n"
             "  --json   print the checks as a JSON object\n\nExample: kbox doctor --json\n");
      return 0;
    } else {
      fprintf(stderr, "kbox: doctor: unknown option '%s' (see 'kbox doctor --help')\n", argv[i]);
      return 125;
    }
  }
  struct check checks[32];
  size_t n = run_checks(checks);
  bool all = true;
  for (size_t i = 0; i < n; i++) all &= checks[i].ok || !checks[i].required;
  if (json) {
    json_t *o = json_object(), *arr = json_array();
    for (size_t i = 0; i < n; i++)
      json_array_append_new(arr, json_pack("{s:s, s:b, s:b, s:s}", "name", checks[i].name, "ok", checks[i].ok,
                                           "required", checks[i].required, "detail", checks[i].detail));
    json_object_set_new(o, "checks", arr);
    json_object_set_new(o, "full_isolation", json_boolean(all));
    json_dumpf(o, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(o);
  } else {
    for (size_t i = 0; i < n; i++)
      printf("%-4s %-32s %s\n", checks[i].ok ? "ok" : (checks[i].required ? "FAIL" : "warn"), checks[i].name, checks[i].detail);
    printf("%s\n", all ? "kbox run can fully isolate on this host." : "kbox run cannot fully isolate on this host (see FAIL lines).");
  }
  return all ? 0 : 1;
}
