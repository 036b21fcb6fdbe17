#include "testlib.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *kt_kbox(void) {
  const char *p = getenv("KBOX_BIN");
  return p ? p : "kbox";
}

const char *kt_helper(const char *name) {
  static char buf[8][4096];
  static int slot;
  char *b = buf[slot++ % 8];
  const char *root = getenv("KBOX_BUILD_ROOT");
  snprintf(b, 4096, "%s/tests/helpers/%s", root ? root : ".", name);
  return b;
}

/* Append what is readable on fd to a growing buffer; returns false at EOF. */
static bool drain(int fd, char **buf, size_t *len) {
  char tmp[65536];
  ssize_t n = read(fd, tmp, sizeof(tmp));
  if (n <= 0) return n < 0 && errno == EINTR;
  *buf = realloc(*buf, *len + (size_t)n + 1);
  memcpy(*buf + *len, tmp, (size_t)n);
  *len += (size_t)n;
  (*buf)[*len] = '\0';
  return true;
}

static void child_exec(char *const argv[], char *const extra_env[], int as_uid, int in, int out, int err) {
  dup2(in, 0);
  dup2(out, 1);
  dup2(err, 2);
  for (int i = 0; extra_env && extra_env[i]; i++) putenv(extra_env[i]);
  if (as_uid >= 0) {
    if (setgroups(0, NULL) < 0 || setresgid((gid_t)as_uid, (gid_t)as_uid, (gid_t)as_uid) < 0 ||
        setresuid((uid_t)as_uid, (uid_t)as_uid, (uid_t)as_uid) < 0)
      _exit(99);
  }
  execvp(argv[0], argv);
  _exit(98);
}

pid_t kt_spawn(char *const argv[], char *const extra_env[], int as_uid, const char *out) {
  int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  cr_assert_geq(fd, 0, "create %s: %s", out, strerror(errno));
  pid_t pid = fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) child_exec(argv, extra_env, as_uid, 0, fd, fd);
  close(fd);
  return pid;
}

void kt_write_data(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
  cr_assert_eq(write(fd, data, len), (ssize_t)len, "write %s: %s", path, strerror(errno));
  cr_assert_eq(fchmod(fd, 0644), 0, "chmod %s: %s", path, strerror(errno));
  close(fd);
}

void kt_write_file(const char *path, const char *text) { kt_write_data(path, text, strlen(text)); }

void kt_write_in(const char *dir, const char *name, const char *text) {
  char path[4096];
  cr_assert_lt((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name), sizeof(path), "path too long: %s/%s", dir, name);
  kt_write_file(path, text);
}

int kt_run(char *const argv[], char *const extra_env[], int as_uid, int timeout_s, struct kt_result *r) {
  memset(r, 0, sizeof(*r));
  int o[2], e[2];
  if (pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) return -1;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = fork();
  if (pid == 0) child_exec(argv, extra_env, as_uid, devnull, o[1], e[1]);
  close(o[1]);
  close(e[1]);
  close(devnull);
  size_t olen = 0, elen = 0;
  r->out = calloc(1, 1);
  r->err = calloc(1, 1);
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  bool oopen = true, eopen = true;
  while (oopen || eopen) {
    struct pollfd p[2] = {{.fd = oopen ? o[0] : -1, .events = POLLIN}, {.fd = eopen ? e[0] : -1, .events = POLLIN}};
    clock_gettime(CLOCK_MONOTONIC, &now);
    long left = (long)timeout_s * 1000 - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
    if (left <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    if (poll(p, 2, (int)left) <= 0) continue;
    if (p[0].revents) oopen = drain(o[0], &r->out, &olen);
    if (p[1].revents) eopen = drain(e[0], &r->err, &elen);
  }
  close(o[0]);
  close(e[0]);
  waitpid(pid, &r->status, 0);
  r->exit_code = WIFEXITED(r->status) ? WEXITSTATUS(r->status) : 128 + WTERMSIG(r->status);
  return 0;
}

void kt_result_free(struct kt_result *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

void kt_skip_or_fail(const char *reason) {
  const char *must = getenv("KBOX_MUST_WORK");
  if (must != NULL && strcmp(must, "1") == 0) cr_assert_fail("KBOX_MUST_WORK=1 but this test cannot run here: %s", reason);
  cr_skip_test("%s", reason);
}

bool kt_is_root(void) { return geteuid() == 0; }

const char *kt_field(const char *text, const char *key) {
  static char value[4096];
  size_t klen = strlen(key);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
      const char *v = p + klen + 1;
      size_t n = strcspn(v, "\n");
      if (n >= sizeof(value)) n = sizeof(value) - 1;
      memcpy(value, v, n);
      value[n] = '\0';
      return value;
    }
  }
  return NULL;
}

char *kt_tmpdir(void) {
  char *t = strdup("/tmp/kbox-test-XXXXXX");
  if (mkdtemp(t) == NULL) cr_assert_fail("mkdtemp: %s", strerror(errno));
  chmod(t, 0755);
  return t;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  remove(path);
  return 0;
}

void kt_rmrf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

bool kt_userns_works(int as_uid) {
  pid_t pid = fork();
  if (pid == 0) {
    if (as_uid >= 0 && (setgroups(0, NULL) < 0 || setresgid((gid_t)as_uid, (gid_t)as_uid, (gid_t)as_uid) < 0 ||
                        setresuid((uid_t)as_uid, (uid_t)as_uid, (uid_t)as_uid) < 0))
      _exit(1);
    _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Sanitizer build: test programs do not check themselves for leaks (criterion's runner and the
   tests' own buffers are not the subject); kbox, run as its own process by the tests, still is.
   ASAN_OPTIONS from the environment would override this, so tools/test.sh leaves detect_leaks out. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

int kt_dir_entries(const char *dir, char *names, size_t n) {
  DIR *d = opendir(dir);
  int count = 0;
  names[0] = '\0';
  if (d == NULL) return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    count++;
    size_t len = strlen(names);
    snprintf(names + len, n - len, " %s", e->d_name);
  }
  closedir(d);
  return count;
}
