#include "kernel/runlock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/log.h"
#include "util/parse.h"

#define ACQUIRE_TRIES 100 /* x 5 ms: how long a remover of the same name may hold the lock */

int kbox_runlock_take(const char *dir, bool create) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/" KBOX_RUNLOCK_NAME, dir);
  for (int tries = 0; tries < 16; tries++) {
    cleanup_close int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) return -1;
    struct stat held, linked;
    if (fstat(fd, &held) == 0 && stat(path, &linked) == 0 && held.st_dev == linked.st_dev && held.st_ino == linked.st_ino)
      return steal_fd(fd);
    /* A remover unlinked the file between our open and flock: the lock we hold guards nothing. */
    if (!create) break;
  }
  errno = create ? EWOULDBLOCK : ENOENT;
  return -1;
}

int kbox_runlock_acquire(const char *dir, kbox_error_t *err) {
  for (int i = 0; i < ACQUIRE_TRIES; i++) {
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating run directory %s", dir);
    int fd = kbox_runlock_take(dir, true);
    if (fd >= 0) return fd;
    if (errno == ENOENT) continue; /* removed under us as stale: create it again */
    if (errno != EWOULDBLOCK) return kbox_error_make(err, errno, "locking %s/" KBOX_RUNLOCK_NAME, dir);
    nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
  }
  return kbox_error_make(err, EBUSY, "run directory %s is in use by a running kbox (its lock file %s/" KBOX_RUNLOCK_NAME
                         " is held): pick another --id or stop that kernel", dir, dir);
}

bool kbox_runlock_held(const char *dir) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/" KBOX_RUNLOCK_NAME, dir);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  return flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D) rmdir(path);
  else unlink(path);
  return 0;
}

void kbox_runlock_clear(const char *dir) {
  cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  DIR *d = dfd >= 0 ? fdopendir(dup(dfd)) : NULL;
  if (d == NULL) return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, KBOX_RUNLOCK_NAME) == 0)
      continue;
    if (unlinkat(dfd, e->d_name, 0) == 0 || errno != EISDIR) continue;
    char p[4400];
    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
    nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
  closedir(d);
}

void kbox_runlock_remove(const char *dir, int fd) {
  kbox_runlock_clear(dir);
  char path[4200];
  snprintf(path, sizeof(path), "%s/" KBOX_RUNLOCK_NAME, dir);
  unlink(path);
  rmdir(dir);
  if (fd >= 0) close(fd);
}

/* kbox releases before the lock file marked a live run dir by binding the abstract socket
   "kbox-run/UID/ID" instead. A dir without a lock file whose socket is bound belongs to such an
   older kbox, still running (seen from this network namespace only, as it always was): keep it,
   so upgrading kbox does not pull the run dirs from under kernels started by the old one. */
static bool legacy_alive(const char *id) {
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int len = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "kbox-run/%u/%s", (unsigned)geteuid(), id);
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
  return bind(fd, (struct sockaddr *)&addr, alen) < 0 && errno == EADDRINUSE;
}

bool kbox_runlock_is_run_dir(const char *dir) {
  static const char *const marks[] = {KBOX_RUNLOCK_NAME, "k", "connection.json", NULL};
  char p[4300];
  for (size_t i = 0; marks[i] != NULL; i++) {
    snprintf(p, sizeof(p), "%s/%s", dir, marks[i]);
    if (access(p, F_OK) == 0) return true;
  }
  return false;
}

void kbox_runlock_sweep(const char *base) {
  DIR *d = opendir(base);
  if (d == NULL) return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    kbox_error_t ignored = NULL;
    if (e->d_name[0] == '.' || kbox_validate_id("", e->d_name, &ignored) < 0) {
      kbox_error_free(&ignored);
      continue;
    }
    char p[4200];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", base, e->d_name);
    if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode)) continue;
    if (!kbox_runlock_is_run_dir(p)) continue; /* e.g. the zygotes' dir (warm/): not ours to sweep */
    char lock[4300];
    snprintf(lock, sizeof(lock), "%s/" KBOX_RUNLOCK_NAME, p);
    if (access(lock, F_OK) < 0 && legacy_alive(e->d_name)) continue;
    int fd = kbox_runlock_take(p, true);
    if (fd < 0) continue; /* alive (or not ours to judge) */
    kbox_debug("removing stale run directory %s", p);
    kbox_runlock_remove(p, fd);
  }
  closedir(d);
}
