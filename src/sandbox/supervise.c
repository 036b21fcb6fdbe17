#include "sandbox/supervise.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cgroup/limits.h"
#include "util/log.h"

/* Milliseconds until --timeout (0: it has passed), -1 without one. */
static long long timeout_left(const struct kbox_sandbox *sb) {
  if (sb->spec->limits.timeout_ms == 0) return -1;
  long long left = (long long)sb->spec->limits.timeout_ms - kbox_sandbox_elapsed_ms(sb);
  return left > 0 ? left : 0;
}

static void on_signals(struct kbox_sandbox *sb, int sigfd, const struct kbox_supervise_hooks *h) {
  struct signalfd_siginfo si;
  while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
    if (h != NULL && h->on_signal != NULL) h->on_signal(h->data, (int)si.ssi_signo);
    else kbox_sandbox_signal(sb, (int)si.ssi_signo);
  }
}

/* The time poll may sleep: until the hooks' next deadline or --timeout, whichever comes first. */
static int poll_wait(long long hook_wait, long long left) {
  long long w = hook_wait;
  if (left >= 0 && (w < 0 || left < w)) w = left;
  return w > INT_MAX ? INT_MAX : (int)w;
}

void kbox_sandbox_supervise(struct kbox_sandbox *sb, int sigfd, const struct kbox_supervise_hooks *h) {
  struct pollfd fds[KBOX_SUPERVISE_MAX_FDS + 3];
  while (!sb->reaped && !sb->released) {
    long long left = timeout_left(sb);
    if (left == 0) {
      sb->timed_out = true;
      if (h != NULL && h->on_timeout != NULL) h->on_timeout(h->data);
      kbox_sandbox_kill(sb);
      break;
    }
    long long hook_wait = -1;
    int n = h != NULL && h->prepare != NULL ? h->prepare(h->data, fds, KBOX_SUPERVISE_MAX_FDS, &hook_wait) : 0;
    if (sb->reaped) break; /* a deadline killed it */
    int at = n;
    fds[at] = (struct pollfd){.fd = sb->pidfd, .events = POLLIN};
    fds[at + 1] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    fds[at + 2] = (struct pollfd){.fd = sb->chan, .events = POLLIN};
    int ready = poll(fds, (nfds_t)(sb->chan >= 0 ? at + 3 : at + 2), poll_wait(hook_wait, left));
    if (ready < 0) {
      if (errno != EINTR) {
        kbox_log(KBOX_LOG_ERROR, "poll: %s", strerror(errno));
        break;
      }
      for (int i = 0; i < at + 3; i++) fds[i].revents = 0;
    }
    if (h != NULL && h->service != NULL) h->service(h->data, fds, n, ready);
    if (fds[at + 1].revents & POLLIN) on_signals(sb, sigfd, h);
    if (sb->chan >= 0 && (fds[at + 2].revents & (POLLIN | POLLERR | POLLHUP))) {
      kbox_error_t ignored = NULL;
      kbox_sandbox_on_message(sb, &ignored);
      kbox_error_free(&ignored);
      if (sb->leave_on_status && sb->have_status) kbox_sandbox_release(sb);
    }
    if (fds[at].revents & POLLIN) kbox_sandbox_reap(sb);
  }
}

bool kbox_sandbox_explain_end(const struct kbox_sandbox *sb, const char *who, char *buf, size_t n) {
  if (sb->timed_out) snprintf(buf, n, "the %s ran past --timeout %.3gs and was killed", who, (double)sb->spec->limits.timeout_ms / 1000.0);
  else if (!sb->have_status) snprintf(buf, n, "the sandbox's init process ended without reporting the %s's status", who);
  else return false;
  return true;
}

bool kbox_sandbox_explain_limits(const struct kbox_sandbox *sb, char *buf, size_t n) {
  return kbox_limits_explain(sb->cgroup, &sb->spec->limits, buf, n);
}
