#include "kernel/reaper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernel/runlock.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/orphan.h"
#include "util/proc.h"

/* Records on the pipe: a type byte, then a NUL-terminated string. */
#define REC_RUNDIR 'R'
#define REC_CONN 'C'   /* followed by a REC_KEY record */
#define REC_KEY 'K'
#define REC_SOCKET 'S'
#define REC_FORGET 'F'  /* the run directory turned out not to be ours (its id is in use) */
#define REC_FILE 'U'    /* a file of kbox's own to unlink (the detach log) */

#define REAPER_BUF 32768
#define LOCK_WAIT_MS 30000 /* how long the dead kbox's sandbox may keep the run lock */

/* Send one record (atomic: at most PIPE_BUF bytes). */
static void send_rec(int fd, char type, const char *s) {
  char rec[PIPE_BUF];
  size_t n = strlen(s);
  if (fd < 0 || n + 2 > sizeof(rec)) return;
  rec[0] = type;
  memcpy(rec + 1, s, n + 1);
  ssize_t w;
  do w = write(fd, rec, n + 2); while (w < 0 && errno == EINTR);
}

/* Remove the run directory once its lock is free (nobody alive uses it). */
static void reap_rundir(const char *dir) {
  for (int waited = 0; waited < LOCK_WAIT_MS; waited += 20) {
    int fd = kbox_runlock_take(dir, false);
    if (fd >= 0) {
      kbox_runlock_remove(dir, fd);
      return;
    }
    if (errno != EWOULDBLOCK) {
      /* no lock file: kbox died before taking it, or its normal exit removed everything */
      rmdir(dir);
      return;
    }
    nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
  }
}

/* Remove the connection file if it still holds our key. */
static void reap_conn(const char *path, const char *key) {
  kbox_error_t err = NULL;
  cleanup_free char *text = NULL;
  if (kbox_read_file(path, 1 << 16, &text, NULL, &err) < 0) {
    kbox_error_free(&err);
    return;
  }
  if (key[0] != '\0' && strstr(text, key) != NULL) unlink(path);
}

static void reap_socket(const char *path) {
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
}

/* Act on every record of buf[0..n); the run directory last (its lock may take a moment). */
static void reap_all(char *buf, size_t n) {
  const char *conn = NULL, *rundir = NULL;
  for (size_t i = 0; i < n;) {
    char type = buf[i];
    const char *s = buf + i + 1;
    size_t len = strnlen(s, n - i - 1);
    if (i + 1 + len >= n) break; /* a record cut by kbox's death */
    if (type == REC_RUNDIR) rundir = s;
    else if (type == REC_FORGET) rundir = NULL;
    else if (type == REC_SOCKET) reap_socket(s);
    else if (type == REC_FILE) unlink(s);
    else if (type == REC_CONN) conn = s;
    else if (type == REC_KEY && conn != NULL) reap_conn(conn, s);
    i += len + 2;
  }
  if (rundir != NULL) reap_rundir(rundir);
}

/* The reaper's life: collect records until EOF, then clean up. */
__attribute__((noreturn)) static void reaper_main(int fd) {
  static char buf[REAPER_BUF];
  size_t n = 0;
  /* Keep only the pipe and /dev/null as stdio: no lock, socket or terminal of kbox stays open. */
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int i = 0; i <= 2 && null >= 0; i++) dup2(null, i);
  kbox_close_fds_except(3, fd);
  for (;;) {
    if (n == sizeof(buf)) break; /* cannot happen (a handful of records); act on what came */
    ssize_t r = read(fd, buf + n, sizeof(buf) - n);
    if (r == 0 || (r < 0 && errno != EINTR)) break;
    if (r > 0) n += (size_t)r;
  }
  reap_all(buf, n);
  _exit(0);
}

static pid_t middle[8]; /* the reapers' short-lived parents, not reaped yet */
static size_t middle_n;

/* reaper_main for kbox_orphan_start. */
__attribute__((noreturn)) static void reaper_start(int fd, void *unused) { reaper_main(fd); }

int kbox_kreaper_start(const char *rundir, kbox_error_t *err) {
  int wfd;
  fflush(NULL);
  pid_t pid = kbox_orphan_start(reaper_start, NULL, "run directory reaper", &wfd, err);
  if (pid < 0) return -1;
  /* Its intermediate process is not waited for here (it may not run for milliseconds on a busy
     machine): at cleanup (kbox_kreaper_wait_started). */
  if (middle_n < sizeof(middle) / sizeof(middle[0])) middle[middle_n++] = pid;
  else while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
  send_rec(wfd, REC_RUNDIR, rundir);
  return wfd;
}

void kbox_kreaper_wait_started(void) {
  for (size_t i = 0; i < middle_n; i++) {
    int st;
    while (waitpid(middle[i], &st, 0) < 0 && errno == EINTR) {}
  }
  middle_n = 0;
}

void kbox_kreaper_forget_rundir(int fd) { send_rec(fd, REC_FORGET, ""); }

void kbox_kreaper_watch_file(int fd, const char *path) { send_rec(fd, REC_FILE, path); }

void kbox_kreaper_watch_conn(int fd, const char *path, const char *key) {
  send_rec(fd, REC_CONN, path);
  send_rec(fd, REC_KEY, key);
}

/* Path of the host-side ipc socket of channel ch ("" unless ipc with a port). */
static void ipc_path(const struct kbox_conn *host, int ch, char *buf, size_t n) {
  buf[0] = '\0';
  if (strcmp(host->transport, "ipc") == 0 && host->port[ch] != 0) snprintf(buf, n, "%s-%u", host->ip, host->port[ch]);
}

void kbox_kreaper_watch_ipc(int fd, const struct kbox_conn *host) {
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    char p[300];
    ipc_path(host, ch, p, sizeof(p));
    if (p[0] != '\0') send_rec(fd, REC_SOCKET, p);
  }
}

void kbox_kreaper_unlink_ipc(const struct kbox_conn *host) {
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    char p[300];
    ipc_path(host, ch, p, sizeof(p));
    if (p[0] != '\0') reap_socket(p);
  }
}
