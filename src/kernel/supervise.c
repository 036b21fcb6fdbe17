/* The kernel-mode event loop: one poll() over the broker's sockets (their ZMQ_FDs), pid 1's pidfd, the
   signalfd, pid 1's channel and the launching client's pidfd (JPY_PARENT_PID), plus the deadlines
   (startup, --timeout, --exec-timeout, --idle-timeout, shutdown grace). When the kernel dies with
   requests pending, the broker answers them with the cause (src/kernel/pending.c). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "kernel/launch.h"
#include "sandbox/supervise.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/proc.h"
#include "util/trace.h"

#define STARTUP_MS 60000       /* the kernel must answer kernel_info_request by then */
#define INFO_RETRY_MS 1000
#define SHUTDOWN_GRACE_MS 5000 /* shutdown_request -> kill */
#define EXEC_GRACE_MS 3000     /* exec-timeout interrupt -> kill */
#define PARENT_GRACE_MS 2000   /* launching client gone -> kill (nobody waits for a clean end) */
#define PRESSURE_POLL_MS 250   /* memory use sampled this often while a cell runs */
#define PRESSURE_PERCENT 80    /* warn the cell past this share of --memory */

struct loop {
  struct kbox_kernel *k;
  struct kbox_sandbox *sb;
  bool announced;
  long long next_info;
  long long kill_at;          /* 0: none */
  char interrupted_id[64];    /* execute_request already interrupted for --exec-timeout */
  long long interrupted_at;
  int parent_fd;              /* pidfd of the launching client (JPY_PARENT_PID), -1: none */
  long long next_pressure;    /* next memory sample */
  char warned_id[64];         /* execute_request already warned about memory pressure */
  bool pending;               /* the broker may hold messages already: do not sleep before looking */
  int parent_at, net_at;      /* where prepare put parent_fd and the --net notices fd, -1: not */
  int peers_at;               /* where prepare put the broker's connection monitor, -1: not */
};

/* A kernelspec launch: jupyter_client sets JPY_PARENT_PID to its own pid. Watch that process (as
   ipykernel does) so the kernel ends with its client; --detach kernels outlive their caller. */
static int open_parent(const struct kbox_spec *spec) {
  const char *env = getenv("JPY_PARENT_PID");
  uint64_t pid = 0;
  kbox_error_t err = NULL;
  if (spec->kernel.detach || env == NULL || env[0] == '\0') return -1;
  if (kbox_parse_uint("JPY_PARENT_PID", env, 2, 4194304, &pid, &err) < 0 || (pid_t)pid == getpid()) {
    kbox_error_free(&err);
    return -1;
  }
  int fd = kbox_pidfd_open((pid_t)pid, 0);
  if (fd < 0) kbox_log(KBOX_LOG_WARN, "JPY_PARENT_PID=%s: cannot watch that process (%s); the kernel will not end with it",
                       env, strerror(errno));
  else kbox_debug("watching the launching client, pid %s", env);
  return fd;
}

/* Ask the kernel to shut down and kill it if it has not gone after the grace period. */
static void begin_shutdown(struct loop *l, const char *why, long long now) {
  if (l->kill_at != 0) return;
  if (l->k->ended_by == NULL) l->k->ended_by = why;
  json_t *c = json_pack("{s:b}", "restart", 0);
  kbox_broker_request(&l->k->broker, KBOX_CH_CONTROL, "shutdown_request", c);
  json_decref(c);
  l->kill_at = now + SHUTDOWN_GRACE_MS;
}

/* Tell the caller how to connect (stdout or --connection-file); false when that failed. */
static bool publish(struct loop *l) {
  struct kbox_kernel *k = l->k;
  if (k->conn_given) return true;
  if (k->spec->kernel.connection_file != NULL) {
    kbox_error_t err = NULL;
    if (kbox_conn_write(k->spec->kernel.connection_file, &k->host, k->spec->id, true, &err) < 0) {
      kbox_error_report(&err);
      k->ended_by = "connection_file_error";
      kbox_sandbox_kill(l->sb);
      return false;
    }
    k->conn_written = true;
    return true;
  }
  json_t *j = kbox_conn_to_json(&k->host, k->spec->id);
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(j);
  if (s != NULL) {
    dprintf(k->out_fd, "%s\n", s);
    free(s);
  }
  return true;
}

/* The kernel answered: publish its connection info, then tell the on_ready hook. */
static void announce(struct loop *l, long long now) {
  struct kbox_kernel *k = l->k;
  l->announced = true;
  k->ready_ms = now;
  kbox_info("kernel ready after %lld ms", now - k->started_ms);
  kbox_trace_step("kernel_info_reply through the broker: ready");
  if (publish(l) && k->on_ready != NULL) k->on_ready(k->on_ready_data);
}

/* A signal kbox received: SIGTERM/SIGHUP shut the kernel down, SIGINT interrupts a running cell,
   the others go to pid 1. */
static void on_signal(void *data, int sig) {
  struct loop *l = data;
  long long now = kbox_now_ms();
  if (sig == SIGTERM || sig == SIGHUP) {
    kbox_info("%s: shutting the kernel down", sigabbrev_np(sig));
    if (l->kill_at != 0) kbox_sandbox_kill(l->sb); /* second request: no more grace */
    else begin_shutdown(l, sig == SIGTERM ? "sigterm" : "sighup", now);
  } else if (sig == SIGINT && !kbox_broker_may_interrupt(&l->k->broker, now)) {
    kbox_info("SIGINT: no cell is running (or one was just interrupted): not passed to the kernel");
  } else {
    if (sig == SIGINT) kbox_audit_interrupted(l->k->audit);
    kbox_sandbox_signal(l->sb, sig); /* SIGINT interrupts the running cell */
  }
}

/* --exec-timeout: interrupt a cell that runs too long, kill the sandbox if that did not help. */
static void check_exec(struct loop *l, long long now) {
  struct kbox_broker *b = &l->k->broker;
  uint64_t limit = l->k->spec->kernel.exec_timeout_ms;
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

/* "256 MiB" */
static void human_size(uint64_t v, char *buf, size_t n) {
  if (v >= (1ULL << 30)) snprintf(buf, n, "%.3g GiB", (double)v / (double)(1ULL << 30));
  else snprintf(buf, n, "%.3g MiB", (double)v / (double)(1ULL << 20));
}

/* Bytes the sandbox's cgroup uses now (v2 memory.current, v1 memory.usage_in_bytes), -1 unknown. */
static long long memory_now(const struct kbox_sandbox *sb) {
  const struct kbox_cgroup *cg = sb->cgroup;
  char path[4200];
  if (cg == NULL) return -1;
  if (cg->mech[KBOX_LIM_MEMORY] == KBOX_MECH_CGROUP2 && cg->v2_dir != NULL)
    snprintf(path, sizeof(path), "%s/memory.current", cg->v2_dir);
  else if (cg->mech[KBOX_LIM_MEMORY] == KBOX_MECH_CGROUP1 && cg->v1_dir[KBOX_CTL_MEMORY] != NULL)
    snprintf(path, sizeof(path), "%s/memory.usage_in_bytes", cg->v1_dir[KBOX_CTL_MEMORY]);
  else return -1;
  char *text = NULL;
  kbox_error_t err = NULL;
  if (kbox_read_file(path, 64, &text, NULL, &err) < 0) {
    kbox_error_free(&err);
    return -1;
  }
  long long v = strtoll(text, NULL, 10);
  free(text);
  return v;
}

/* Under memory pressure, one line on the running cell's stderr before the OOM killer acts. */
static void check_memory(struct loop *l, long long now) {
  struct kbox_broker *b = &l->k->broker;
  const struct kbox_spec *s = l->k->spec;
  if (b->exec_id[0] == '\0' || strcmp(b->exec_id, l->warned_id) == 0 || now < l->next_pressure) return;
  l->next_pressure = now + PRESSURE_POLL_MS;
  long long used = memory_now(l->sb);
  json_t *parent = kbox_pending_header(&b->pending, b->exec_id);
  if (used < 0 || parent == NULL || (uint64_t)used * 100 < s->limits.memory_bytes * PRESSURE_PERCENT) return;
  snprintf(l->warned_id, sizeof(l->warned_id), "%s", b->exec_id);
  char lim[32], text[256];
  human_size(s->limits.memory_bytes, lim, sizeof(lim));
  snprintf(text, sizeof(text), "kbox: warning: the sandbox uses %lld%% of its memory limit (%s, --memory); past it the kernel is killed and its state lost\n",
           (long long)((uint64_t)used * 100 / s->limits.memory_bytes), lim);
  json_t *c = json_pack("{s:s, s:s}", "name", "stderr", "text", text);
  struct kbox_frames f;
  kbox_frames_init(&f);
  kbox_wire_build(&b->host_auth, &f, "kernel.kbox.stream", 18, b->session, "stream", parent, c, NULL);
  kbox_frames_send(b->host[KBOX_CH_IOPUB], &f);
  b->recheck |= 1u << KBOX_CH_IOPUB; /* the send may have consumed the socket's wake-up */
  kbox_frames_free(&f);
  json_decref(c);
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
      kbox_trace_step("kernel_info_request sent");
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
  check_exec(l, now);
  check_memory(l, now);
  if (b->exec_id[0] != '\0' && strcmp(b->exec_id, l->warned_id) != 0 && l->sb->cgroup != NULL && l->next_pressure < next)
    next = l->next_pressure > now ? l->next_pressure : now + PRESSURE_POLL_MS;
  if (s->kernel.exec_timeout_ms && b->exec_id[0] != '\0') {
    long long at = strcmp(b->exec_id, l->interrupted_id) == 0 ? l->interrupted_at + EXEC_GRACE_MS
                                                              : b->exec_started_ms + (long long)s->kernel.exec_timeout_ms;
    if (at < next) next = at;
  }
  if (s->kernel.idle_timeout_ms && b->ready && l->kill_at == 0 && !b->busy) {
    long long at = b->last_activity_ms + (long long)s->kernel.idle_timeout_ms;
    if (now >= at) {
      kbox_log(KBOX_LOG_WARN, "no client activity for %.3gs and the kernel idle: shutting it down (--idle-timeout)",
               (double)s->kernel.idle_timeout_ms / 1000.0);
      begin_shutdown(l, "idle_timeout", now);
    } else if (at < next) {
      next = at;
    }
  }
  if (l->kill_at != 0) {
    if (now >= l->kill_at) {
      /* It replied: the kernel ended its work as asked and was still ending what it had started
         (ipykernel terminates its child processes progressively, for up to ~30 s). */
      k->stragglers_killed = b->shutdown_replied;
      if (k->stragglers_killed)
        kbox_info("the kernel acknowledged shutdown_request but still ran %d s later (ending its child processes): "
                  "killing what is left", SHUTDOWN_GRACE_MS / 1000);
      else
        kbox_log(KBOX_LOG_WARN, "the kernel did not exit %d s after shutdown_request: killing it", SHUTDOWN_GRACE_MS / 1000);
      kbox_sandbox_kill(l->sb);
      return 0;
    }
    if (l->kill_at < next) next = l->kill_at;
  }
  long long broker_at = kbox_broker_next_ms(b); /* flow control retries */
  if (broker_at != 0 && broker_at < next) next = broker_at;
  return next - now;
}

/* How the kernel process ended, for a sentence ("was killed by signal 6 (SIGABRT)"). */
static void how_it_ended(const struct kbox_sandbox *sb, char *buf, size_t n) {
  if (sb->have_status && WIFSIGNALED(sb->status))
    snprintf(buf, n, "was killed by signal %d (SIG%s)", WTERMSIG(sb->status), sigabbrev_np(WTERMSIG(sb->status)));
  else if (sb->have_status && WIFEXITED(sb->status)) snprintf(buf, n, "exited with status %d", WEXITSTATUS(sb->status));
  else snprintf(buf, n, "ended");
}

#define STATE_GONE "the kernel's state (variables, imports) is lost; a restarted kernel starts empty"

/* ename and evalue for the requests the dead kernel left unanswered: the limit that killed it, the
   peak, and that its state is gone. */
static void death_cause(const struct kbox_kernel *k, const struct kbox_sandbox *sb, const char **ename, char *ev, size_t n) {
  const struct kbox_spec *s = k->spec;
  const struct kbox_cgroup_stats *st = sb->cgroup != NULL ? &sb->cgroup->stats : NULL;
  const char *by = k->ended_by ? k->ended_by : "";
  char how[96], lim[32], peak[48] = "";
  how_it_ended(sb, how, sizeof(how));
  if (st != NULL && st->memory_peak > 0) {
    char p[32];
    human_size((uint64_t)st->memory_peak, p, sizeof(p));
    snprintf(peak, sizeof(peak), ", peak %s", p);
  }
  if (st != NULL && st->oom_kills > 0) {
    *ename = "SandboxMemoryLimit";
    human_size(s->limits.memory_bytes, lim, sizeof(lim));
    snprintf(ev, n, "the kernel was killed: the sandbox ran out of memory (limit %s%s, --memory); " STATE_GONE, lim, peak);
  } else if (strcmp(by, "exec_timeout") == 0) {
    *ename = "SandboxTimeout";
    snprintf(ev, n, "the cell ran past --exec-timeout %.3gs and ignored the interrupt, so the kernel was killed; " STATE_GONE,
             (double)s->kernel.exec_timeout_ms / 1000.0);
  } else if (sb->timed_out || strcmp(by, "timeout") == 0) {
    *ename = "SandboxTimeout";
    snprintf(ev, n, "the kernel ran past the sandbox's wall-clock limit (--timeout %.3gs) and was killed; " STATE_GONE,
             (double)s->limits.timeout_ms / 1000.0);
  } else if (st != NULL && st->pids_max_hits > 0) {
    *ename = "SandboxProcessLimit";
    snprintf(ev, n, "the kernel %s after the sandbox hit its process limit (%llu processes/threads, --pids; %lld fork(s) refused%s); " STATE_GONE,
             how, (unsigned long long)s->limits.pids, (long long)st->pids_max_hits, peak);
  } else if (by[0] != '\0' && strcmp(by, "startup_timeout") != 0) {
    *ename = "KernelShutdown";
    snprintf(ev, n, "kbox shut the kernel down (%s) before it finished this request; " STATE_GONE, by);
  } else {
    *ename = "KernelDied";
    snprintf(ev, n, "the kernel %s while handling this request%s%s%s; " STATE_GONE, how, peak[0] ? " (memory" : "",
             peak[0] ? peak + 1 : "", peak[0] ? ")" : "");
  }
}

/* The kernel is gone: answer what it left pending, so no client waits for its own timeout. */
static void answer_pending(struct kbox_kernel *k, const struct kbox_sandbox *sb) {
  struct kbox_broker *b = &k->broker;
  if (b->pending.n == 0) return;
  const char *ename = "KernelDied";
  char evalue[512];
  death_cause(k, sb, &ename, evalue, sizeof(evalue));
  size_t n = kbox_pending_answer(&b->pending, b->host[KBOX_CH_SHELL], b->host[KBOX_CH_IOPUB], &b->host_auth, b->session,
                                 ename, evalue);
  kbox_log(KBOX_LOG_WARN, "answered %zu pending request(s) of the dead kernel: %s: %s", n, ename, evalue);
}

/* Before each poll: the deadlines, then the broker's sockets, the launching client and the --net
   notices to watch. */
static int prepare(void *data, struct pollfd *pfd, int max, long long *wait_ms) {
  struct loop *l = data;
  struct kbox_kernel *k = l->k;
  struct kbox_broker *b = &k->broker;
  long long wait = deadlines(l, kbox_now_ms());
  if (l->sb->reaped || max < KBOX_BROKER_NPOLL + 3) return 0;
  kbox_broker_pollfds(b, pfd);
  int n = KBOX_BROKER_NPOLL;
  l->parent_at = l->net_at = -1;
  if (l->parent_fd >= 0) pfd[l->parent_at = n++] = (struct pollfd){.fd = l->parent_fd, .events = POLLIN};
  if (kbox_netpolicy_fd(&k->net) >= 0) pfd[l->net_at = n++] = (struct pollfd){.fd = kbox_netpolicy_fd(&k->net), .events = POLLIN};
  l->peers_at = -1; /* connections opened and closed (the per-port cap) */
  if (kbox_peers_fd(&b->peers) >= 0) pfd[l->peers_at = n++] = (struct pollfd){.fd = kbox_peers_fd(&b->peers), .events = POLLIN};
  if (l->pending || b->recheck != 0 || wait < 0) wait = 0; /* recheck: our own requests used a socket */
  if (k->net.pending_len > 0 && wait > 1000) wait = 1000; /* notices held for a cell that may not come */
  *wait_ms = wait;
  return n;
}

/* After each poll: the broker's traffic, --net notices, the announcement, the launching client. */
static void service(void *data, struct pollfd *pfd, int n, int ready) {
  struct loop *l = data;
  struct kbox_kernel *k = l->k;
  struct kbox_broker *b = &k->broker;
  if (n == 0) return;
  if (ready == 0) kbox_netpolicy_flush_stale(&k->net, b);
  long long now = kbox_now_ms();
  if (l->peers_at >= 0 && (pfd[l->peers_at].revents & POLLIN)) kbox_peers_service(&b->peers);
  l->pending = kbox_broker_service(b, pfd, now);
  /* --net notices (a cell that just started or ended got its own from the broker: exec_hook) */
  if (l->net_at >= 0 && (pfd[l->net_at].revents & POLLIN)) kbox_netpolicy_service(&k->net, b);
  if (!l->announced && b->ready) announce(l, now);
  if (l->parent_at >= 0 && (pfd[l->parent_at].revents & (POLLIN | POLLERR | POLLHUP))) {
    kbox_log(KBOX_LOG_WARN, "the launching client (JPY_PARENT_PID) exited: shutting the kernel down");
    close(l->parent_fd);
    l->parent_fd = -1;
    begin_shutdown(l, "parent_exited", now);
    if (l->kill_at > now + PARENT_GRACE_MS) l->kill_at = now + PARENT_GRACE_MS;
  }
}

static void on_timeout(void *data) {
  struct loop *l = data;
  l->k->ended_by = "timeout";
}

void kbox_kernel_supervise(struct kbox_kernel *k, struct kbox_sandbox *sb, int sigfd) {
  struct loop l = {.k = k, .sb = sb, .parent_fd = open_parent(k->spec), .pending = true};
  struct kbox_supervise_hooks hooks = {.data = &l, .prepare = prepare, .service = service, .on_signal = on_signal,
                                       .on_timeout = on_timeout};
  struct kbox_broker *b = &k->broker;
  signal(SIGPIPE, SIG_IGN); /* a dead client's stderr pipe must not kill the supervisor */
  kbox_sandbox_supervise(sb, sigfd, &hooks);
  /* Forward what the kernel sent last (shutdown_reply, final status) and let it leave. */
  zmq_pollitem_t items[KBOX_BROKER_NPOLL];
  kbox_broker_pollitems(b, items);
  for (int round = 0; round < 4 && zmq_poll(items, KBOX_BROKER_NPOLL, 20) > 0; round++) {
    kbox_broker_dispatch(b, items, kbox_now_ms());
    kbox_broker_pollitems(b, items);
  }
  answer_pending(k, sb);
  if (l.parent_fd >= 0) close(l.parent_fd);
  kbox_broker_close(b, 200);
  k->broker_open = false;
}

bool kbox_kernel_explain_end(const struct kbox_kernel *k, const struct kbox_sandbox *sb, char *buf, size_t n) {
  if (sb->timed_out && k->ended_by != NULL && strcmp(k->ended_by, "exec_timeout") == 0) {
    snprintf(buf, n, "a cell ran past --exec-timeout and ignored the interrupt; the sandbox was killed");
  } else if (!sb->timed_out && k->stragglers_killed) {
    snprintf(buf, n, "the kernel shut down as asked (%s); the processes still running %d s later were killed",
             k->ended_by != NULL ? k->ended_by : "shutdown_request", SHUTDOWN_GRACE_MS / 1000);
  } else if (kbox_sandbox_explain_end(sb, "kernel", buf, n)) {
    return true;
  } else {
    const char *when = k->ready_ms ? "" : " before it answered kernel_info_request";
    if (WIFEXITED(sb->status) && WEXITSTATUS(sb->status) != 0)
      snprintf(buf, n, "the kernel exited with status %d%s", WEXITSTATUS(sb->status), when);
    else if (WIFSIGNALED(sb->status))
      snprintf(buf, n, "the kernel was killed by signal %d (SIG%s)%s%s", WTERMSIG(sb->status),
               sigabbrev_np(WTERMSIG(sb->status)), when, WTERMSIG(sb->status) == SIGKILL ? " (out of memory?)" : "");
    else
      return false;
  }
  return true;
}

json_t *kbox_kernel_report(const struct kbox_kernel *k) {
  json_t *r = json_object();
  json_object_set_new(r, "ended_by", k->ended_by ? json_string(k->ended_by) : json_string("kernel_exit"));
  json_object_set_new(r, "ready", json_boolean(k->ready_ms != 0));
  json_object_set_new(r, "start", json_string(k->start != NULL ? k->start : "cold"));
  json_object_set_new(r, "ready_seconds", k->ready_ms ? json_real((double)(k->ready_ms - k->started_ms) / 1000.0) : json_null());
  json_object_set_new(r, "exec_timeouts", json_integer(k->exec_interrupts));
  json_t *stats = kbox_broker_stats(&k->broker);
  json_object_update(r, stats);
  json_decref(stats);
  json_object_set_new(r, "stragglers_killed", json_boolean(k->stragglers_killed));
  return r;
}

int kbox_kernel_exit_code(const struct kbox_kernel *k, const struct kbox_sandbox *sb) {
  return k->stragglers_killed && !sb->timed_out ? 0 : kbox_sandbox_exit_code(sb);
}

void kbox_kernel_fix_verdict(const struct kbox_kernel *k, const struct kbox_sandbox *sb, json_t *r) {
  if (!k->stragglers_killed || sb->timed_out) return;
  /* kbox's SIGKILL hit only what the kernel left running: the end itself was the graceful one. */
  json_object_set_new(r, "exit_code", json_integer(0));
  json_object_set_new(r, "reason", json_string("shutdown"));
  json_object_set_new(r, "signal", json_null());
  json_object_set_new(r, "signal_name", json_null());
  json_object_set_new(r, "stragglers_killed", json_true());
}
