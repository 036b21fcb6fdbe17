#include "sandbox/report.h"

#include "cgroup/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/alloc.h"

static double tv_seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

const char *kbox_report_reason(const struct kbox_sandbox *sb) {
  if (sb->timed_out) return "timeout";
  if (sb->have_status && WIFEXITED(sb->status)) return "exited";
  if (sb->have_status && WIFSIGNALED(sb->status)) return "signaled";
  if (sb->kill_signal != 0) return "killed";
  return "sandbox-died";
}

json_t *kbox_report_build(const struct kbox_sandbox *sb, const struct kbox_error_s *setup_error) {
  json_t *r = json_object();
  json_object_set_new(r, "id", json_string(sb->spec->id));
  if (setup_error != NULL) {
    json_object_set_new(r, "exit_code", json_integer(setup_error->exit_code));
    json_object_set_new(r, "reason", json_string("setup-failed"));
    json_object_set_new(r, "error", json_string(setup_error->msg));
    return r;
  }
  json_object_set_new(r, "exit_code", json_integer(kbox_sandbox_exit_code(sb)));
  json_object_set_new(r, "reason", json_string(kbox_report_reason(sb)));
  int sig = 0;
  if (sb->have_status && WIFSIGNALED(sb->status)) sig = WTERMSIG(sb->status);
  else if (!sb->have_status && sb->kill_signal) sig = sb->kill_signal;
  json_object_set_new(r, "signal", sig ? json_integer(sig) : json_null());
  json_object_set_new(r, "signal_name", sig ? json_string(sigabbrev_np(sig)) : json_null());
  json_object_set_new(r, "timed_out", json_boolean(sb->timed_out));
  json_object_set_new(r, "wall_seconds", json_real((double)kbox_sandbox_elapsed_ms(sb) / 1000.0));
  json_t *cpu = json_object();
  json_object_set_new(cpu, "user_seconds", json_real(tv_seconds(sb->rusage.ru_utime)));
  json_object_set_new(cpu, "system_seconds", json_real(tv_seconds(sb->rusage.ru_stime)));
  json_object_set_new(r, "cpu", cpu);
  json_object_set_new(r, "cpu_seconds", json_real(tv_seconds(sb->rusage.ru_utime) + tv_seconds(sb->rusage.ru_stime)));
  json_object_set_new(r, "max_rss_kib", json_integer(sb->rusage.ru_maxrss));
  kbox_limits_report(sb->cgroup, &sb->spec->limits, r);
  return r;
}

/* Write the report to fd; 0 or -1 with errno. */
static int dump_to(int fd, json_t *report) {
  int rc = json_dumpfd(report, fd, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (rc == 0 && write(fd, "\n", 1) != 1) rc = -1;
  return rc;
}

int kbox_report_write(const char *path, json_t *report, kbox_error_t *err) {
  if (strcmp(path, "-") == 0) {
    if (json_dumpf(report, stderr, JSON_INDENT(2) | JSON_SORT_KEYS) < 0) return kbox_error_make(err, EIO, "writing the report");
    fputc('\n', stderr);
    return 0;
  }
  struct stat st;
  if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    /* /proc/self/fd/N, /dev/stderr, a symlink: write through it, in place. */
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return kbox_error_make(err, errno, "--report: cannot write %s", path);
    int rc = dump_to(fd, report);
    if (close(fd) < 0 || rc < 0) return kbox_error_make(err, errno, "--report: writing %s", path);
    return 0;
  }
  /* A regular file appears whole or not at all: a temporary file next to it, then rename. */
  char *tmp = NULL;
  tmp = xasprintf("%s.kbox-tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    kbox_error_make(err, errno, "--report: cannot create %s", tmp);
    free(tmp);
    return -1;
  }
  int rc = dump_to(fd, report);
  if (rc == 0) rc = fsync(fd);
  if (close(fd) < 0) rc = -1;
  if (rc == 0) rc = rename(tmp, path);
  if (rc < 0) {
    kbox_error_make(err, errno, "--report: writing %s", path);
    unlink(tmp);
  }
  free(tmp);
  return rc < 0 ? -1 : 0;
}
