#include "fixture.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char rootfs_path[256];
static char rootless_path[256];

/* cp SRC DST with mode. */
static void copy_file(const char *src, const char *dst, mode_t mode) {
  int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, mode);
  cr_assert(in >= 0 && out >= 0, "copy %s -> %s: %s", src, dst, strerror(errno));
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0) cr_assert(write(out, buf, (size_t)n) == n);
  close(in);
  close(out);
  chmod(dst, mode);
}

const char *fx_rootfs(void) {
  if (rootfs_path[0] != '\0') return rootfs_path;
  char *dir = kt_tmpdir();
  snprintf(rootfs_path, sizeof(rootfs_path), "%s", dir);
  free(dir);
  static const char *const dirs[] = {"bin", "etc", "home", "scratch", "proc", "sys", "dev", "tmp"};
  for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", rootfs_path, dirs[i]);
    mkdir(p, 0755);
  }
  char p[512];
  snprintf(p, sizeof(p), "%s/scratch", rootfs_path);
  chmod(p, 01777);
  snprintf(p, sizeof(p), "%s/bin/busybox", rootfs_path);
  copy_file("/bin/busybox", p, 0755);
  static const char *const applets[] = {"sh", "id", "cat", "ls", "sleep", "echo", "touch", "true", "false"};
  for (size_t i = 0; i < sizeof(applets) / sizeof(applets[0]); i++) {
    snprintf(p, sizeof(p), "%s/bin/%s", rootfs_path, applets[i]);
    cr_assert(symlink("busybox", p) == 0);
  }
  snprintf(p, sizeof(p), "%s/probe", rootfs_path);
  copy_file(kt_helper("probe"), p, 0755);
  kt_write_in(rootfs_path, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/sh\n");
  kt_write_in(rootfs_path, "etc/group", "root:x:0:\nusers:x:100:\n");
  kt_write_in(rootfs_path, "notexec", "#!/bin/sh\necho hi\n");
  return rootfs_path;
}

static int chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  return lchown(path, KT_NOBODY, KT_NOBODY);
}

const char *fx_rootfs_as(int as_uid) {
  if (as_uid < 0) return fx_rootfs();
  if (rootless_path[0] != '\0') return rootless_path;
  char *dir = kt_tmpdir();
  snprintf(rootless_path, sizeof(rootless_path), "%s/rootfs", dir);
  free(dir);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", fx_rootfs(), rootless_path);
  cr_assert(system(cmd) == 0, "copying the test rootfs");
  cr_assert(nftw(rootless_path, chown_one, 16, FTW_PHYS) == 0, "chown of the rootless test rootfs");
  return rootless_path;
}

/* argv for "kbox run --rootfs R opts... -- cmd..." (caller frees the array only). */
static char **build_argv(int as_uid, const char *const *opts, const char *const *cmd) {
  size_t n = 0;
  char **v = calloc(256, sizeof(char *));
  v[n++] = (char *)kt_kbox();
  v[n++] = "run";
  bool has_rootfs = false;
  for (size_t i = 0; opts[i] != NULL; i++) has_rootfs |= strcmp(opts[i], "--rootfs") == 0;
  if (!has_rootfs) {
    v[n++] = "--rootfs";
    v[n++] = (char *)fx_rootfs_as(as_uid);
  }
  for (size_t i = 0; opts[i] != NULL && n < 250; i++) v[n++] = (char *)opts[i];
  v[n++] = "--";
  for (size_t i = 0; cmd[i] != NULL && n < 254; i++) v[n++] = (char *)cmd[i];
  return v;
}

void fx_run(int as_uid, const char *const *opts, const char *const *cmd, struct kt_result *r) {
  char **v = build_argv(as_uid, opts, cmd);
  cr_assert(kt_run(v, NULL, as_uid, 60, r) == 0);
  free(v);
}

pid_t fx_spawn(int as_uid, const char *const *opts, const char *const *cmd, int *out_fd) {
  char **v = build_argv(as_uid, opts, cmd);
  int p[2];
  cr_assert(pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    if (as_uid >= 0 && (setgroups(0, NULL) < 0 || setresgid((gid_t)as_uid, (gid_t)as_uid, (gid_t)as_uid) < 0 ||
                        setresuid((uid_t)as_uid, (uid_t)as_uid, (uid_t)as_uid) < 0))
      _exit(99);
    execv(v[0], v);
    _exit(98);
  }
  free(v);
  close(p[1]);
  *out_fd = p[0];
  return pid;
}

bool fx_wait_line(int fd, const char *line, int timeout_s) {
  char buf[8192];
  size_t len = 0;
  time_t end = time(NULL) + timeout_s;
  while (time(NULL) < end) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
    if (n <= 0) return false;
    len += (size_t)n;
    buf[len] = '\0';
    for (char *s = buf; s != NULL && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
      if (strncmp(s, line, strlen(line)) == 0 && (s[strlen(line)] == '\n')) return true;
    if (len >= sizeof(buf) - 1) len = 0;
  }
  return false;
}

void fx_require(int as_uid) {
  if (as_uid < 0 && !kt_is_root()) kt_skip_or_fail("needs root");
  if (as_uid >= 0 && !kt_is_root()) kt_skip_or_fail("rootless tests switch to uid 65534 and need root to do so");
  if (!kt_userns_works(as_uid)) kt_skip_or_fail("user namespaces are not available for this uid");
}

/* Parent pid of pid from /proc/PID/stat, or -1. */
static pid_t parent_of(pid_t pid) {
  char p[64], buf[512];
  snprintf(p, sizeof(p), "/proc/%d/stat", pid);
  int fd = open(p, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char *rp = strrchr(buf, ')');
  if (rp == NULL) return -1;
  char state;
  int ppid = -1;
  if (sscanf(rp + 2, "%c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

int fx_descendants(pid_t root, pid_t *out, int max) {
  int n = 0;
  bool grew = true;
  while (grew) {
    grew = false;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      pid_t pid = atoi(e->d_name);
      if (pid <= 0) continue;
      pid_t pp = parent_of(pid);
      bool parent_known = pp == root;
      for (int i = 0; i < n && !parent_known; i++) parent_known = out[i] == pp;
      bool known = false;
      for (int i = 0; i < n; i++) known |= out[i] == pid;
      if (parent_known && !known && n < max) {
        out[n++] = pid;
        grew = true;
      }
    }
    if (d) closedir(d);
  }
  return n;
}

void fx_cleanup(void) {
  if (rootless_path[0] != '\0') {
    char *slash = strrchr(rootless_path, '/');
    *slash = '\0';
    kt_rmrf(rootless_path);
    rootless_path[0] = '\0';
  }
  if (rootfs_path[0] != '\0') kt_rmrf(rootfs_path);
  rootfs_path[0] = '\0';
}
