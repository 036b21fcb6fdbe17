#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/parse.h"

/* Milliseconds on the monotonic clock. */
static long long mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int kbox_read_fd_within(int fd, const char *name, size_t max, int timeout_ms, char **out, size_t *len, kbox_error_t *err) {
  size_t cap = 4096, n = 0;
  long long deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;
  cleanup_free char *buf = xmalloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (cap >= max) {
        char lim[32];
        return kbox_error_make(err, 0, "%s is larger than the limit of %s", name, kbox_human_size(max, lim, sizeof(lim)));
      }
      cap = cap * 2 > max ? max : cap * 2;
      char *nb = xrealloc(buf, cap + 1);
      buf = nb;
    }
    if (deadline != 0) {
      long long left = deadline - mono_ms();
      struct pollfd p = {.fd = fd, .events = POLLIN};
      int r = left > 0 ? poll(&p, 1, (int)left) : 0;
      if (r < 0 && errno == EINTR) continue;
      if (r == 0)
        return kbox_error_make(err, 0, "%s did not end within the limit of %g s", name, timeout_ms / 1000.0);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return kbox_error_make(err, errno, "cannot read %s", name);
    if (r == 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  if (len != NULL) *len = n;
  *out = steal_ptr(buf);
  return 0;
}

int kbox_read_fd(int fd, const char *name, size_t max, char **out, size_t *len, kbox_error_t *err) {
  return kbox_read_fd_within(fd, name, max, 0, out, len, err);
}

/* What a file type is called in messages. */
static const char *type_name(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "not a regular file";
}

int kbox_open_regular_at(int dirfd, const char *path, kbox_error_t *err) {
  /* O_NONBLOCK: opening a FIFO without a writer must not wait; cleared once we know it is a file. */
  cleanup_close int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return kbox_error_make(err, errno, "cannot open %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0) return kbox_error_make(err, errno, "cannot stat %s", path);
  if (!S_ISREG(st.st_mode)) return kbox_error_make(err, 0, "%s is %s (a regular file is needed)", path, type_name(st.st_mode));
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) return kbox_error_make(err, errno, "fcntl %s", path);
  return steal_fd(fd);
}

int kbox_open_regular(const char *path, kbox_error_t *err) { return kbox_open_regular_at(AT_FDCWD, path, err); }

int kbox_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len, kbox_error_t *err) {
  cleanup_close int fd = kbox_open_regular_at(dirfd, path, err);
  if (fd < 0) return -1;
  return kbox_read_fd(fd, path, max, out, len, err);
}

int kbox_read_file(const char *path, size_t max, char **out, size_t *len, kbox_error_t *err) {
  return kbox_read_file_at(AT_FDCWD, path, max, out, len, err);
}

int kbox_write_file_at(int dirfd, const char *path, const char *data, kbox_error_t *err) {
  cleanup_close int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return kbox_error_make(err, errno, "cannot open %s for writing", path);
  size_t n = strlen(data);
  ssize_t w = write(fd, data, n);
  if (w < 0) return kbox_error_make(err, errno, "cannot write '%s' to %s", data, path);
  if ((size_t)w != n) return kbox_error_make(err, 0, "short write to %s", path);
  return 0;
}

int kbox_write_file(const char *path, const char *data, kbox_error_t *err) {
  return kbox_write_file_at(AT_FDCWD, path, data, err);
}

int kbox_mkdir_p(const char *path, mode_t mode, kbox_error_t *err) {
  cleanup_free char *p = xstrdup(path);
  for (char *s = p + 1; *s != '\0'; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, mode) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "mkdir %s", p);
    *s = '/';
  }
  if (mkdir(p, mode) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "mkdir %s", p);
  return 0;
}
