#include "kernel/runchild.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fs.h"
#include "util/proc.h"

void kbox_run_child_init(struct kbox_run_child *ch) {
  *ch = (struct kbox_run_child){.pid = -1, .pidfd = -1, .report_fd = -1, .err_fd = -1};
}

/* Read fd (at most max bytes) into a string ("" if it cannot be read or is larger). */
static char *slurp_fd(int fd, size_t max) {
  char *text = NULL;
  kbox_error_t err = NULL;
  if (kbox_read_fd(fd, "input", max, &text, NULL, &err) < 0) {
    kbox_error_free(&err);
    text = xstrdup("");
  }
  return text;
}

/* Why the child ended before printing its connection JSON: the message of its last "error:" line
   (e.g. "the kbox layer is missing at ..."), else its last line, else its exit status. */
static int child_failed(struct kbox_run_child *ch, kbox_error_t *err) {
  while (waitpid(ch->pid, &ch->status, 0) < 0 && errno == EINTR) {
  }
  ch->reaped = true;
  lseek(ch->err_fd, 0, SEEK_SET);
  cleanup_free char *text = slurp_fd(ch->err_fd, 65536);
  const char *cause = NULL;
  size_t len = 0;
  for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
    next = strchr(line, '\n');
    size_t n = next ? (size_t)(next - line) : strlen(line);
    if (next) next++;
    const char *e = memmem(line, n, ": error: ", 9);
    if (e != NULL) cause = e + 9, len = n - (size_t)(e + 9 - line);
    else if (n > 0 && (cause == NULL || memmem(cause, len, ": error: ", 9) == NULL)) cause = line, len = n;
  }
  if (cause != NULL && len > 0) return kbox_error_make(err, 0, "the sandboxed kernel did not start: %.*s", (int)len, cause);
  return kbox_error_make(err, 0, "the sandboxed kernel did not start (kbox run exited with status %d and said nothing)",
                         WIFEXITED(ch->status) ? WEXITSTATUS(ch->status) : 128 + WTERMSIG(ch->status));
}

/* In the forked child: stdin from /dev/null, stdout on the pipe, stderr in the memfd, exec kbox run. */
__attribute__((noreturn)) static void exec_run(const struct kbox_run_child *ch, int out_fd, char **av) {
  prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0); /* our death shuts the kernel down */
  int null = open("/dev/null", O_RDONLY);
  if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(ch->err_fd, 2) < 0) _exit(KBOX_RUN_CHILD_FAILED);
  fcntl(ch->report_fd, F_SETFD, 0);
  execv("/proc/self/exe", av);
  dprintf(2, "kbox: exec /proc/self/exe: %s\n", strerror(errno));
  _exit(KBOX_RUN_CHILD_FAILED);
}

/* The first line the child prints (its connection JSON), within start_ms. */
static int read_conn(struct kbox_run_child *ch, int rd, int start_ms, struct kbox_conn *conn, kbox_error_t *err) {
  char line[8192];
  size_t n = 0;
  long long deadline = kbox_now_ms() + start_ms;
  while (n < sizeof(line) - 1 && memchr(line, '\n', n) == NULL) {
    long long left = deadline - kbox_now_ms();
    struct pollfd pfd = {.fd = rd, .events = POLLIN};
    if (left <= 0) return kbox_error_make(err, 0, "the kernel did not start within %d s", start_ms / 1000);
    if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) return kbox_error_make(err, errno, "poll");
    ssize_t r = read(rd, line + n, sizeof(line) - 1 - n);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return child_failed(ch, err);
    n += (size_t)r;
  }
  line[n] = '\0';
  json_error_t je;
  json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &je);
  if (j == NULL) return kbox_error_make(err, 0, "kbox run printed no connection JSON: %s", je.text);
  kbox_conn_init(conn);
  int rc = kbox_conn_from_json(j, conn, "kbox run's connection JSON", err);
  json_decref(j);
  return rc;
}

int kbox_run_child_start(struct kbox_run_child *ch, const struct kbox_strv *run_args, int start_ms,
                         struct kbox_conn *conn, kbox_error_t *err) {
  ch->report_fd = memfd_create("kbox-report", MFD_CLOEXEC);
  ch->err_fd = memfd_create("kbox-stderr", MFD_CLOEXEC);
  int p[2];
  if (ch->report_fd < 0 || ch->err_fd < 0 || pipe2(p, O_CLOEXEC) < 0) return kbox_error_make(err, errno, "memfd/pipe");
  char report[64];
  snprintf(report, sizeof(report), "/proc/self/fd/%d", ch->report_fd);
  struct kbox_strv av = {0};
  kbox_strv_add(&av, "kbox");
  kbox_strv_add(&av, "run");
  for (size_t i = 0; i < run_args->n; i++) kbox_strv_add(&av, run_args->v[i]);
  kbox_strv_add(&av, "--report");
  kbox_strv_add(&av, report);
  ch->pid = fork();
  if (ch->pid < 0) {
    kbox_strv_free(&av);
    return kbox_error_make(err, errno, "fork");
  }
  if (ch->pid == 0) exec_run(ch, p[1], av.v);
  kbox_strv_free(&av);
  close(p[1]);
  cleanup_close int rd = p[0];
  ch->pidfd = kbox_pidfd_open(ch->pid, 0);
  return read_conn(ch, rd, start_ms, conn, err);
}

void kbox_run_child_stop(struct kbox_run_child *ch) {
  if (ch->pid <= 0 || ch->reaped) return;
  kill(ch->pid, SIGTERM);
  struct pollfd pfd = {.fd = ch->pidfd, .events = POLLIN};
  if (ch->pidfd < 0 || poll(&pfd, 1, 10000) <= 0) kill(ch->pid, SIGKILL);
  while (waitpid(ch->pid, &ch->status, 0) < 0 && errno == EINTR) {
  }
  ch->reaped = true;
}

json_t *kbox_run_child_report(const struct kbox_run_child *ch) {
  if (ch->report_fd < 0) return NULL;
  lseek(ch->report_fd, 0, SEEK_SET);
  cleanup_free char *s = slurp_fd(ch->report_fd, 1u << 20);
  return s[0] ? json_loads(s, 0, NULL) : NULL;
}

void kbox_run_child_show_stderr(const struct kbox_run_child *ch) {
  if (ch->err_fd < 0) return;
  off_t end = lseek(ch->err_fd, 0, SEEK_END);
  lseek(ch->err_fd, end > 65536 ? end - 65536 : 0, SEEK_SET);
  cleanup_free char *s = slurp_fd(ch->err_fd, 65536);
  fputs(s, stderr);
}

void kbox_run_child_close(struct kbox_run_child *ch) {
  if (ch->pidfd >= 0) close(ch->pidfd);
  if (ch->report_fd >= 0) close(ch->report_fd);
  if (ch->err_fd >= 0) close(ch->err_fd);
  ch->pidfd = ch->report_fd = ch->err_fd = -1;
}
