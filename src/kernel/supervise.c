/* The kernel-mode event loop: one poll() over the broker's sockets (their ZMQ_FDs), pid 1's pidfd, the
   signalfd and pid 1's channel, plus the deadlines (startup, --timeout, --exec-timeout,
   --idle-timeout, shutdown grace). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/launch.h"
#include "util/log.h"

#define STARTUP_MS 60000       /* the kernel must answer kernel_info_request by then */
#define INFO_RETRY_MS 1000
#define SHUTDOWN_GRACE_MS 5000 /* shutdown_request -> kill */
#define EXEC_GRACE_MS 3000     /* exec-timeout interrupt -> kill */

struct loop {
  struct kbox_kernel *k;
  struct kbox_sandbox *sb;
  bool announced;
  long long next_info;
  long long kill_at;          /* 0: none */
  char interrupted_id[64];    /* execute_request already interrupted for --exec-timeout */
  long long interrupted_at;
};

/* Ask the kernel to shut down and kill it if it has not gone after the grace period. */
static void begin_shutdown(struct loop *l, const char *why, long long now) {
  if (l->kill_at != 0) return;
  if (l->k->ended_by == NULL) l->k->ended_by = why;
  json_t *c = json_pack("{s:b}", "restart", 0);
  kbox_broker_request(&l->k->broker, KBOX_CH_CONTROL, "shutdown_request", c);
  json_decref(c);
  l->kill_at = now + SHUTDOWN_GRACE_MS;
}

/* The kernel answered: tell the caller how to connect (stdout or --connection-file). */
static void announce(struct loop *l, long long now) {
  struct kbox_kernel *k = l->k;
  l->announced = true;
  k->ready_ms = now;
  kbox_info("kernel ready after %lld ms", now - k->started_ms);
  if (k->conn_given) return;
  if (k->spec->connection_file != NULL) {
    kbox_error_t err = NULL;
    if (kbox_conn_write(k->spec->connection_file, &k->host, k->spec->id, true, &err) < 0) {
      kbox_error_report(&err);
      k->ended_by = "connection_file_error";
      kbox_sandbox_kill(l->sb);
      return;
    }
    k->conn_written = true;
    return;
  }
  json_t *j = kbox_conn_to_json(&k->host, k->spec->id);
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(j);
  if (s != NULL) {
    dprintf(k->out_fd, "%s\n", s);
    free(s);
  }
}

static void on_signals(struct loop *l, int sigfd, long long now) {
  struct signalfd_siginfo si;
  while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
    int sig = (int)si.ssi_signo;
    if (sig == SIGTERM || sig == SIGHUP) {
      kbox_info("%s: shutting the kernel down", sigabbrev_np(sig));
      if (l->kill_at != 0) kbox_sandbox_kill(l->sb); /* second request: no more grace */
      else begin_shutdown(l, sig == SIGTERM ? "sigterm" : "sighup", now);
    } else {
      if (sig == SIGINT) kbox_audit_interrupted(l->k->audit);
      kbox_sandbox_signal(l->sb, sig); /* SIGINT interrupts the running cell */
    }
  }
}

/* --exec-timeout: interrupt a cell that runs too long, kill the sandbox if that did not help. */
static void check_exec(struct loop *l, long long now) {
  struct kbox_broker *b = &l->k->broker;
  uint64_t limit = l->k->spec->exec_timeout_ms;
  if (limit == 0 || b->exec_id[0] == '\0') return;
  if (strcmp(b->exec_id, l->interrupted_id) != 0) {
    if (now - b->exec_started_ms < (long long)limit) return;
    kbox_log(KBOX_LOG_WARN, "execute_request %s ran past --exec-timeout %.3gs: interrupting it", b->exec_id, (double)limit / 1000.0);
    snprintf(l->interrupted_id, sizeof(l->interrupted_id), "%s", b->exec_id);
    l->interrupted_at = now;
    l->k->exec_interrupts++;
    kbox_audit_timed_out(l->k->audit);
    kbox_sandbox_signal(l->sb, SIGINT);
  } else if (now - l->interrupted_at >= EXEC_GRACE_MS) {
    kbox_log(KBOX_LOG_WARN, "execute_request %s still ran %.3gs after the interrupt: killing the sandbox",
             b->exec_id, EXEC_GRACE_MS / 1000.0);
    l->k->ended_by = "exec_timeout";
    l->sb->timed_out = true;
    kbox_sandbox_kill(l->sb);
  }
}

/* Deadlines: act on those that passed; return the poll timeout until the next one. */
static long long deadlines(struct loop *l, long long now) {
  struct kbox_kernel *k = l->k;
  struct kbox_broker *b = &k->broker;
  const struct kbox_spec *s = k->spec;
  long long next = now + 60000;
  if (!b->ready) {
    if (now >= l->next_info) {
      json_t *c = json_object();
      kbox_broker_request(b, KBOX_CH_SHELL, "kernel_info_request", c);
      json_decref(c);
      l->next_info = now + INFO_RETRY_MS;
    }
    if (now - k->started_ms >= STARTUP_MS) {
      kbox_log(KBOX_LOG_ERROR, "the kernel did not answer kernel_info_request within %d s: giving up", STARTUP_MS / 1000);
      k->ended_by = "startup_timeout";
      kbox_sandbox_kill(l->sb);
      return 0;
    }
    if (l->next_info < next) next = l->next_info;
  }
  if (s->timeout_ms != 0) {
    if (kbox_sandbox_elapsed_ms(l->sb) >= (long long)s->timeout_ms) {
      k->ended_by = "timeout";
      l->sb->timed_out = true;
      kbox_sandbox_kill(l->sb);
      return 0;
    }
    long long at = now + ((long long)s->timeout_ms - kbox_sandbox_elapsed_ms(l->sb));
    if (at < next) next = at;
  }
  check_exec(l, now);
  if (s->exec_timeout_ms && b->exec_id[0] != '\0') {
    long long at = strcmp(b->exec_id, l->interrupted_id) == 0 ? l->interrupted_at + EXEC_GRACE_MS
                                                              : b->exec_started_ms + (long long)s->exec_timeout_ms;
    if (at < next) next = at;
  }
  if (s->idle_timeout_ms && b->ready && l->kill_at == 0 && !b->busy) {
    long long at = b->last_activity_ms + (long long)s->idle_timeout_ms;
    if (now >= at) {
      kbox_log(KBOX_LOG_WARN, "no client activity for %.3gs and the kernel idle: shutting it down (--idle-timeout)",
               (double)s->idle_timeout_ms / 1000.0);
      begin_shutdown(l, "idle_timeout", now);
    } else if (at < next) {
      next = at;
    }
  }
  if (l->kill_at != 0) {
    if (now >= l->kill_at) {
      kbox_log(KBOX_LOG_WARN, "the kernel did not exit %d s after shutdown_request: killing it", SHUTDOWN_GRACE_MS / 1000);
      kbox_sandbox_kill(l->sb);
      return 0;
    }
    if (l->kill_at < next) next = l->kill_at;
  }
  return next - now;
}

void kbox_kernel_supervise(struct kbox_kernel *k, struct kbox_sandbox *sb, int sigfd) {
  struct loop l = {.k = k, .sb = sb};
  struct kbox_broker *b = &k->broker;
  struct pollfd pfd[KBOX_BROKER_NPOLL + 4];
  bool pending = true; /* the broker may hold messages already: do not sleep before looking */
  while (!sb->reaped) {
    long long now = kbox_now_ms();
    long long wait = deadlines(&l, now);
    if (sb->reaped) break;
    kbox_broker_pollfds(b, pfd);
    int n = KBOX_BROKER_NPOLL;
    pfd[n++] = (struct pollfd){.fd = sb->pidfd, .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    int chan_at = sb->chan >= 0 ? n : -1;
    if (sb->chan >= 0) pfd[n++] = (struct pollfd){.fd = sb->chan, .events = POLLIN};
    int net_at = kbox_netpolicy_fd(&k->net) >= 0 ? n : -1;
    if (net_at >= 0) pfd[n++] = (struct pollfd){.fd = kbox_netpolicy_fd(&k->net), .events = POLLIN};
    if (pending || b->recheck != 0 || wait < 0) wait = 0; /* recheck: our own requests used a socket */
    if (k->net.pending_len > 0 && wait > 1000) wait = 1000; /* notices held for a cell that may not come */
    int ready = poll(pfd, (nfds_t)n, wait > INT_MAX ? INT_MAX : (int)wait);
    if (ready == 0) kbox_netpolicy_flush_stale(&k->net, b);
    if (ready < 0) {
      if (errno != EINTR) {
        kbox_log(KBOX_LOG_ERROR, "poll: %s", strerror(errno));
        break;
      }
      for (int i = 0; i < n; i++) pfd[i].revents = 0;
    }
    now = kbox_now_ms();
    pending = kbox_broker_service(b, pfd, now);
    /* --net notices (a cell that just started or ended got its own from the broker: exec_hook) */
    if (net_at >= 0 && (pfd[net_at].revents & POLLIN)) kbox_netpolicy_service(&k->net, b);
    if (!l.announced && b->ready) announce(&l, now);
    if (pfd[KBOX_BROKER_NPOLL + 1].revents & POLLIN) on_signals(&l, sigfd, now);
    if (chan_at >= 0 && (pfd[chan_at].revents & (POLLIN | POLLERR | POLLHUP))) {
      kbox_error_t ignored = NULL;
      kbox_sandbox_on_message(sb, &ignored);
      kbox_error_free(&ignored);
    }
    if (pfd[KBOX_BROKER_NPOLL].revents & POLLIN) kbox_sandbox_reap(sb);
  }
  /* Forward what the kernel sent last (shutdown_reply, final status) and let it leave. */
  zmq_pollitem_t items[KBOX_BROKER_NPOLL];
  kbox_broker_pollitems(b, items);
  for (int round = 0; round < 4 && zmq_poll(items, KBOX_BROKER_NPOLL, 20) > 0; round++) {
    kbox_broker_dispatch(b, items, kbox_now_ms());
    kbox_broker_pollitems(b, items);
  }
  kbox_broker_close(b, 200);
  k->broker_open = false;
}

void kbox_kernel_explain_end(const struct kbox_kernel *k, const struct kbox_sandbox *sb) {
  if (sb->timed_out) {
    if (k->ended_by != NULL && strcmp(k->ended_by, "exec_timeout") == 0)
      fprintf(stderr, "kbox: a cell ran past --exec-timeout and ignored the interrupt; the sandbox was killed\n");
    else
      fprintf(stderr, "kbox: the kernel ran past --timeout %.3gs and was killed\n", (double)k->spec->timeout_ms / 1000.0);
    return;
  }
  if (!sb->have_status) {
    fprintf(stderr, "kbox: the sandbox's init process ended without reporting the kernel's status\n");
    return;
  }
  const char *when = k->ready_ms ? "" : " before it answered kernel_info_request";
  if (WIFEXITED(sb->status) && WEXITSTATUS(sb->status) != 0)
    fprintf(stderr, "kbox: the kernel exited with status %d%s\n", WEXITSTATUS(sb->status), when);
  else if (WIFSIGNALED(sb->status))
    fprintf(stderr, "kbox: the kernel was killed by signal %d (SIG%s)%s%s\n", WTERMSIG(sb->status),
            sigabbrev_np(WTERMSIG(sb->status)), when, WTERMSIG(sb->status) == SIGKILL ? " (out of memory?)" : "");
}

json_t *kbox_kernel_report(const struct kbox_kernel *k) {
  json_t *r = json_object();
  json_object_set_new(r, "ended_by", k->ended_by ? json_string(k->ended_by) : json_string("kernel_exit"));
  json_object_set_new(r, "ready", json_boolean(k->ready_ms != 0));
  json_object_set_new(r, "ready_seconds", k->ready_ms ? json_real((double)(k->ready_ms - k->started_ms) / 1000.0) : json_null());
  json_object_set_new(r, "exec_timeouts", json_integer(k->exec_interrupts));
  json_object_set_new(r, "messages_forwarded", json_integer((json_int_t)k->broker.forwarded));
  json_object_set_new(r, "messages_dropped", json_integer((json_int_t)k->broker.dropped));
  return r;
}
