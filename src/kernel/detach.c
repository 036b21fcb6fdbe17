#include "kernel/detach.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/reaper.h"
#include "kernel/state.h"
#include "sandbox/report.h"
#include "util/cleanup.h"
#include "util/log.h"

#define READY_WAIT_MS 90000 /* kernel mode gives up after 60 s without kernel_info_reply */

/* An existing live kernel with this id: print its connection JSON (waiting while it starts).
   Returns 1 when printed, 0 when there is no live kernel. */
static int print_existing(const char *id) {
  for (int waited = 0; waited < READY_WAIT_MS; waited += 100) {
    struct kbox_state st;
    kbox_error_t err = NULL;
    if (kbox_state_read(id, &st, &err) < 0 || !st.alive) {
      kbox_error_free(&err);
      return 0;
    }
    char path[4200], buf[8192];
    snprintf(path, sizeof(path), "%s/connection.json", st.dir);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n > 0 && buf[n - 1] == '\n') {
      fwrite(buf, 1, (size_t)n, stdout);
      fflush(stdout);
      return 1;
    }
    usleep(100 * 1000);
  }
  return 0;
}

/* Parent side: wait for the connection line on rd; print it, or the child's log when it failed. */
static int wait_child(pid_t pid, int rd, int logrd, const char *log, const struct kbox_spec *spec) {
  char line[8192];
  size_t n = 0;
  for (;;) {
    ssize_t r = read(rd, line + n, sizeof(line) - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
    if (memchr(line, '\n', n) != NULL || n == sizeof(line) - 1) break;
  }
  line[n] = '\0';
  if (n > 0 && line[0] == '{' && line[n - 1] == '\n') {
    fputs(line, stdout);
    fflush(stdout);
    return 0;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  /* Lost a race with another `run --id ID --detach`? Then that kernel is the answer. */
  if (spec->id_given && print_existing(spec->id)) {
    unlink(log);
    return 0;
  }
  /* Through the fd opened before the fork: the supervisor's reaper may have unlinked the log by now. */
  char buf[4096];
  for (ssize_t r; logrd >= 0 && (r = read(logrd, buf, sizeof(buf))) > 0;) fwrite(buf, 1, (size_t)r, stderr);
  unlink(log);
  kbox_log(KBOX_LOG_ERROR, "the detached kernel '%s' did not start", spec->id);
  return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : KBOX_EXIT_RUNTIME;
}

int kbox_detach_start(struct kbox_spec *spec, int *code, kbox_error_t *err) {
  if (!spec->kernel.mode)
    return kbox_error_make(err, 0, "--detach starts a kernel in the background: give no command after the options");
  if (spec->id_given && print_existing(spec->id)) {
    *code = 0;
    return 1;
  }
  char base[3800], log[4200];
  if (kbox_state_base(base, sizeof(base), true, err) < 0 || kbox_state_log_path(spec->id, log, sizeof(log), err) < 0)
    return -1;
  cleanup_close int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (logfd < 0) return kbox_error_make(err, errno, "creating the log %s", log);
  cleanup_close int logrd = open(log, O_RDONLY | O_CLOEXEC);
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return kbox_error_make(err, errno, "pipe");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return kbox_error_make(err, errno, "fork");
  if (pid > 0) {
    close(p[1]);
    *code = wait_child(pid, p[0], logrd, log, spec);
    close(p[0]);
    return 1;
  }
  /* The background supervisor: own session, no terminal, stdout = the pipe (kernel mode prints the
     connection JSON there), stderr = the log; nothing of the caller's stdio stays open. */
  close(p[0]);
  close(steal_fd(logrd));
  setsid();
  signal(SIGPIPE, SIG_IGN);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0 || dup2(logfd, 2) < 0)
    return kbox_error_make(err, errno, "redirecting the detached kernel's stdio");
  close(null);
  close(p[1]);
  return 0;
}

void kbox_detach_record(struct kbox_kernel *k, pid_t sandbox_pid) {
  kbox_error_t err = NULL;
  if (k->rundir == NULL) return;
  kbox_state_drop_verdict(k->spec->id); /* an earlier kernel's with this id */
  char log[4200];
  if (k->spec->kernel.detach && kbox_state_log_path(k->spec->id, log, sizeof(log), &err) == 0)
    kbox_kreaper_watch_file(k->reaper_fd, log); /* removed should this supervisor be SIGKILLed */
  kbox_error_free(&err);
  if (kbox_state_record(k->rundir, k->spec, &k->host, sandbox_pid, &err) < 0) {
    kbox_log(KBOX_LOG_WARN, "%s (kbox ps / exec --id will not see this kernel)", err->msg);
    kbox_error_free(&err);
  }
}

void kbox_detach_verdict(const struct kbox_kernel *k, const struct kbox_sandbox *sb) {
  if (k->rundir == NULL || !k->spec->id_given || k->ended_by != NULL || k->broker.shutdown_replied) return;
  if (sb->have_status && WIFEXITED(sb->status) && WEXITSTATUS(sb->status) == 0) return; /* a clean end */
  json_t *v = kbox_report_build(sb, NULL);
  json_object_set_new(v, "kernel", kbox_kernel_report(k));
  json_object_set_new(v, "supervisor_pid", json_integer(getpid()));
  kbox_state_write_verdict(k->spec->id, v);
  json_decref(v);
}

void kbox_detach_end(const struct kbox_kernel *k) {
  if (!k->spec->kernel.detach || k->ready_ms == 0) return;
  char log[4200];
  kbox_error_t err = NULL;
  if (kbox_state_log_path(k->spec->id, log, sizeof(log), &err) == 0) unlink(log);
  kbox_error_free(&err);
}
