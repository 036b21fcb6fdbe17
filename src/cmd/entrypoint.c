/* `kbox entrypoint`: the kernel image's entrypoint in pods started by Enterprise Gateway (remote
   mode) or jupyter-kernel-controller (kube mode). The kernel runs behind kbox's broker in a nested
   sandbox exactly as with `kbox run`; this file adds PID 1 duties, the pod configuration, the
   protections the pod permits, EG's encrypted response and its comm port. */
#include <errno.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run_opts.h"
#include "kernel/guard.h"
#include "sandbox/report.h"
#include "kernel/launch.h"
#include "remote/comm.h"
#include "remote/config.h"
#include "remote/eg.h"
#include "remote/podstatus.h"
#include "remote/protections.h"
#include "sandbox/caps.h"
#include "sandbox/init.h"
#include "sandbox/sandbox.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/pid1.h"
#include "util/proc.h"

/* Namespaces the nested sandbox cannot do without (init mounts, sets the hostname, brings lo up). */
#define CORE_NS (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
/* EG mode: after reporting a failure to the gateway, how long to wait for it to remove the
   container (it must see the container running to read the report) before exiting anyway. */
#define EG_FAILURE_LINGER_S 30

static void usage(FILE *out) {
  fprintf(out,
          "Usage: kbox entrypoint [OPTIONS]\n"
          "Entrypoint of the kbox kernel image. Configured by the variables Jupyter Enterprise Gateway\n"
          "(KERNEL_ID, RESPONSE_ADDRESS, PUBLIC_KEY, PORT_RANGE) or jupyter-kernel-controller (KERNEL_ID,\n"
          "KERNEL_*_PORT, KERNEL_IDLE_TIMEOUT, KERNEL_WORKING_DIR) set in the pod, or these options:\n\n");
  kbox_remote_config_help(out);
  fprintf(out,
          "\nThe kernel's channels are bound on 0.0.0.0 (tcp); ipykernel itself runs in a sandbox with no\n"
          "network. Exit status: the kernel's, 0 after an idle cull or SIGTERM, 125 when kbox failed\n"
          "(missing or bad variable, unreachable gateway, missing required protection).\n");
}

/* ---- PID 1: forward every asynchronous signal to the worker, reap everything, exit with its status ---- */

/* As PID 1 of a container: fork the real work and stay behind as a minimal init (util/pid1.h).
   Returns in the worker (or when not PID 1). */
static void become_init_if_pid1(void) {
  if (getpid() != 1) return;
  sigset_t old;
  sigprocmask(SIG_SETMASK, NULL, &old);
  kbox_error_t err = NULL;
  int sfd = kbox_pid1_signalfd(&err);
  if (sfd < 0) _exit(kbox_error_report(&err));
  fflush(NULL);
  pid_t worker = fork();
  if (worker < 0) {
    kbox_log(KBOX_LOG_ERROR, "fork: %s", strerror(errno));
    _exit(KBOX_EXIT_RUNTIME);
  }
  if (worker > 0) {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* its environ (keys) stays unreadable to the sandbox */
    _exit(kbox_pid1_wait(sfd, worker));
  }
  close(sfd);
  sigprocmask(SIG_SETMASK, &old, NULL);
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
}

/* ---- the comm port and EG's response, served by threads beside the kernel's event loop ---- */

struct entry {
  struct kbox_remote_config cfg;
  struct kbox_pod_status st; /* st.prot: the probe, then corrected with what the sandbox achieved */
  uint32_t required;       /* KBOX_REQUIRE as a mask of enum kbox_prot */
  bool can_report;         /* EG mode with a valid PUBLIC_KEY and RESPONSE_ADDRESS: failures go to EG */
  struct kbox_spec spec;
  struct kbox_sandbox sb;
  struct kbox_kernel kernel;
  struct kbox_comm comm;
  char dir[64];            /* private temp dir for the connection file */
  char conn_path[128];
  volatile int stop;       /* threads: leave */
  int ready_fd;            /* eventfd: the kernel is ready (on_kernel_ready), or stop */
  volatile int eg_failed;  /* the response could not be delivered: exit non-zero */
  volatile int responded;  /* the connection info reached EG */
};

/* The comm port's {"signum": N}: signal the kernel through the sandbox's pid 1 (which forwards
   catchable signals); 0 only checks that it is alive. */
static int comm_signal(int signum, void *data) {
  struct entry *e = data;
  if (e->sb.reaped || e->sb.pidfd < 0) return -1;
  if (signum == 0) return kbox_pidfd_send_signal(e->sb.pidfd, 0);
  kbox_info("comm port: sending signal %d to the kernel", signum);
  kbox_sandbox_signal(&e->sb, signum);
  return 0;
}

static void *comm_thread(void *arg) {
  struct entry *e = arg;
  while (!e->stop && e->comm.fd >= 0) {
    struct pollfd p = {.fd = e->comm.fd, .events = POLLIN};
    if (poll(&p, 1, 200) > 0) kbox_comm_on_readable(&e->comm);
  }
  return NULL;
}

/* Wait for the kernel to be ready (the broker wrote the connection file by then) or the run to
   end; returns the connection info, NULL when the run ended first. */
static json_t *wait_connection_file(struct entry *e) {
  uint64_t n;
  struct pollfd p = {.fd = e->ready_fd, .events = POLLIN};
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  if (e->stop || read(e->ready_fd, &n, sizeof(n)) != sizeof(n)) return NULL;
  json_error_t jerr;
  json_t *j = json_load_file(e->conn_path, 0, &jerr);
  if (j == NULL) kbox_log(KBOX_LOG_ERROR, "reading the connection file %s: %s", e->conn_path, jerr.text);
  return j;
}

/* Have all five of the kernel's own sockets appeared in its run dir (ipykernel binds them once
   Python runs and ipykernel is imported, before it builds its shell)? */
static bool kernel_listening(const struct kbox_kernel *k) {
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s-%u", k->kern.ip, k->kern.port[ch]);
    if (access(path, F_OK) < 0) return false;
  }
  return true;
}

/* Wait (inotify on the run dir, no polling) until the kernel listens on its sockets, or is ready,
   or the run ends; returns the broker's connection info, NULL when the run ended first. The
   broker's ports are bound already and it queues what clients send until the kernel takes it, so
   the gateway's part (its status poll, the 201, the client's websocket, its kernel_info) runs while
   the kernel finishes its start. */
static json_t *wait_kernel_listening(struct entry *e) {
  cleanup_close int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (in < 0 || inotify_add_watch(in, e->kernel.kdir, IN_CREATE | IN_MOVED_TO) < 0) {
    kbox_log(KBOX_LOG_WARN, "inotify on %s: %s; the connection info goes to the gateway once the kernel is ready",
             e->kernel.kdir, strerror(errno));
    return wait_connection_file(e);
  }
  while (!kernel_listening(&e->kernel)) {
    struct pollfd p[2] = {{.fd = in, .events = POLLIN}, {.fd = e->ready_fd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return NULL;
    if (e->stop) return NULL;
    if (p[1].revents & POLLIN) break; /* ready first (it cannot answer before it listens, but be safe) */
    char buf[4096];
    while (read(in, buf, sizeof(buf)) > 0) {
    }
  }
  if (e->stop) return NULL;
  kbox_info("the kernel listens on its sockets: sending its connection info to the gateway");
  return kbox_conn_to_json(&e->kernel.host, e->cfg.kernel_id);
}

/* Encrypt and deliver the connection info to RESPONSE_ADDRESS. */
static int send_response(struct entry *e, json_t *info, kbox_error_t *err) {
  json_object_set_new(info, "kernel_id", json_string(e->cfg.kernel_id));
  json_object_set_new(info, "comm_port", json_integer(e->comm.port));
  json_object_set_new(info, "pid", json_integer(getpid()));
  json_object_set_new(info, "pgid", json_integer(getpgrp()));
  json_object_set_new(info, "kbox_protections", kbox_pod_status_json(&e->st));
  cleanup_free char *payload = NULL;
  if (kbox_eg_build_payload(info, e->cfg.public_key, &payload, err) < 0) return -1;
  if (kbox_eg_send(e->cfg.response_address, payload, 10000, err) < 0) return -1;
  e->responded = 1;
  kbox_info("connection info sent to %s (comm port %u)", e->cfg.response_address, e->comm.port);
  return 0;
}

static void write_status(struct entry *e, const char *state);

/* Wake the response thread (kernel ready, or the run is over: e->stop). */
static void wake_response(struct entry *e) {
  uint64_t one = 1;
  if (e->ready_fd >= 0 && write(e->ready_fd, &one, sizeof(one)) < 0) kbox_log(KBOX_LOG_WARN, "eventfd: %s", strerror(errno));
}

/* The kernel's on_ready hook (called by the supervise loop once it answered kernel_info; the broker
   binds its ports earlier, so a tcp probe on the shell port passes before the kernel can reply):
   state "ready" in the status file, and with KBOX_EG_RESPOND=ready the connection info goes to EG. */
static void on_kernel_ready(void *data) {
  struct entry *e = data;
  write_status(e, "ready");
  wake_response(e);
}

static void *response_thread(void *arg) {
  struct entry *e = arg;
  json_t *info = e->cfg.respond_when_ready ? wait_connection_file(e) : wait_kernel_listening(e);
  if (info == NULL) return NULL;
  kbox_error_t err = NULL;
  if (send_response(e, info, &err) < 0) {
    e->eg_failed = 1;
    kbox_error_report(&err);
    kill(getpid(), SIGTERM); /* the loop shuts the kernel down; we exit non-zero */
  }
  json_decref(info);
  return NULL;
}

/* ---- set-up ---- */

/* The comm port: 0.0.0.0, a random port of PORT_RANGE (MAX_PORT_RANGE_RETRIES tries), before
   the broker takes its five ports from the same range. */
static int open_comm(struct entry *e, kbox_error_t *err) {
  const struct kbox_remote_config *c = &e->cfg;
  if (c->port_lo == 0) return kbox_comm_listen(&e->comm, 0, comm_signal, e, err);
  for (uint64_t i = 0; i < c->max_retries; i++) {
    unsigned port = c->port_lo + (unsigned)(random() % (c->port_hi - c->port_lo + 1));
    kbox_error_t attempt = NULL;
    if (kbox_comm_listen(&e->comm, port, comm_signal, e, &attempt) == 0) return 0;
    kbox_error_free(&attempt);
  }
  return kbox_error_make(err, 0, "no free comm port in PORT_RANGE %u..%u after MAX_PORT_RANGE_RETRIES=%llu tries",
                         c->port_lo, c->port_hi, (unsigned long long)c->max_retries);
}

/* Controller mode: a connection file with the fixed ports and key, which the broker then uses. */
static int write_fixed_connection(struct entry *e, kbox_error_t *err) {
  struct kbox_conn conn;
  kbox_conn_init(&conn);
  snprintf(conn.ip, sizeof(conn.ip), "0.0.0.0");
  snprintf(conn.key, sizeof(conn.key), "%s", e->cfg.key);
  snprintf(conn.kernel_name, sizeof(conn.kernel_name), "python3");
  for (int ch = 0; ch < KBOX_CH_N; ch++) conn.port[ch] = e->cfg.ports[ch];
  return kbox_conn_write(e->conn_path, &conn, e->cfg.kernel_id, true, err);
}

/* The pod configuration as a kernel-mode spec (what `kbox run --ip 0.0.0.0 --id KERNEL_ID
   --connection-file FILE ...` would make of it), finished as kbox run finishes its own. */
static int build_spec(struct entry *e, kbox_error_t *err) {
  const struct kbox_remote_config *c = &e->cfg;
  struct kbox_spec *s = &e->spec;
  kbox_spec_init(s);
  if (kbox_run_opts_set_id(s, c->kernel_id, err) < 0) return -1; /* first: a spec with an id is freed at exit */
  s->kernel.ip = xstrdup("0.0.0.0");
  s->kernel.connection_file = xstrdup(e->conn_path);
  s->kernel.port_lo = c->port_lo;
  s->kernel.port_hi = c->port_hi;
  s->kernel.idle_timeout_ms = c->idle_timeout_s * 1000;
  s->verbosity = c->verbosity;
  if (c->profile != NULL) s->sec.profile = xstrdup(c->profile);
  if (c->working_dir != NULL && kbox_run_opts_set_workdir(s, c->working_dir, err) < 0) return -1;
  if (c->rootfs != NULL && kbox_run_opts_add_rootfs(s, c->rootfs, err) < 0) return -1;
  if (kbox_run_opts_finish(s, err) < 0) return -1;
  /* uid 0 without CAP_SYS_ADMIN (a default-secured container run as root) cannot take the root
     path (open_tree, idmapped layers in the container's own mount namespace): build the sandbox
     as an unprivileged user would, inside a user namespace of its own */
  if (geteuid() == 0 && !kbox_caps_effective(CAP_SYS_ADMIN)) {
    s->rootless = true;
    kbox_info("running as uid 0 without CAP_SYS_ADMIN: the sandbox is built as for an unprivileged user");
  }
  return 0;
}

/* Probe for the spec just built, enforce KBOX_REQUIRE on what the probe found missing, refuse when
   the sandbox cannot be built at all. What the sandbox then achieves is checked and logged once it
   runs (serve). */
static int check_protections(struct entry *e, kbox_error_t *err) {
  if (kbox_protections_parse_require(e->cfg.require, &e->required, err) < 0) return -1;
  kbox_protections_probe(&e->st.prot, &e->spec);
  e->spec.sandbox.ns_flags = kbox_protections_ns_flags(&e->st.prot);
  /* a required protection allows no fallback that weakens it: the refused step fails the start */
  e->spec.sandbox.fallbacks = kbox_pod_status_fallbacks(e->required);
  if (e->required & (1u << KBOX_PROT_CGROUP)) e->spec.limits.require_limits = true;
  if (kbox_protections_check(&e->st.prot, e->required, err) < 0) return -1;
  if ((kbox_protections_ns_flags(&e->st.prot) & CORE_NS) != CORE_NS) {
    kbox_error_make(err, 0, "this pod permits neither user namespaces nor the capabilities to create pid/mount/net/ipc/uts namespaces, which the nested sandbox needs");
    return kbox_error_hint(err, "allow user namespaces (seccomp Unconfined or a profile permitting clone/unshare; unmasked /proc), see docs/pods.md");
  }
  return 0;
}

static void write_status(struct entry *e, const char *state) {
  if (e->cfg.status_file == NULL) return;
  json_t *extra = json_pack("{s:s, s:s, s:s}", "kernel_id", e->cfg.kernel_id, "mode",
                            e->cfg.mode == KBOX_REMOTE_EG ? "enterprise-gateway" : "kernel-controller", "state", state);
  kbox_error_t err = NULL;
  if (kbox_pod_status_write(&e->st, extra, e->cfg.status_file, &err) < 0) {
    kbox_log(KBOX_LOG_WARN, "%s", err->msg);
    kbox_error_free(&err);
  }
  json_decref(extra);
}

/* Everything before the sandbox starts. */
static int prepare(struct entry *e, int argc, char **argv, bool *help, kbox_error_t *err) {
  kbox_remote_config_init(&e->cfg);
  e->comm.fd = -1;
  e->ready_fd = eventfd(0, EFD_CLOEXEC);
  if (e->ready_fd < 0) return kbox_error_make(err, errno, "eventfd");
  if (kbox_remote_config_from_env(&e->cfg, err) < 0 || kbox_remote_config_parse_args(&e->cfg, argc, argv, help, err) < 0)
    return -1;
  if (*help) return 0;
  kbox_log_set_level(e->cfg.verbosity >= 2 ? KBOX_LOG_DEBUG : e->cfg.verbosity ? KBOX_LOG_INFO : KBOX_LOG_WARN);
  if (kbox_remote_config_finish(&e->cfg, err) < 0) return -1;
  kbox_log_set_id(e->cfg.kernel_id); /* log lines as kbox run's: kbox[ID]: */
  if (e->cfg.mode == KBOX_REMOTE_EG &&
      (kbox_eg_check_public_key(e->cfg.public_key, err) < 0 || kbox_eg_resolve(e->cfg.response_address, err) < 0))
    return -1;
  e->can_report = e->cfg.mode == KBOX_REMOTE_EG;
  snprintf(e->dir, sizeof(e->dir), "/tmp/kbox-entrypoint-XXXXXX");
  if (mkdtemp(e->dir) == NULL) return kbox_error_make(err, errno, "mkdtemp %s", e->dir);
  snprintf(e->conn_path, sizeof(e->conn_path), "%s/connection.json", e->dir);
  srandom((unsigned)(getpid() ^ time(NULL)));
  if (e->cfg.mode == KBOX_REMOTE_EG && open_comm(e, err) < 0) return -1;
  if (e->cfg.mode == KBOX_REMOTE_CONTROLLER && write_fixed_connection(e, err) < 0) return -1;
  if (build_spec(e, err) < 0 || check_protections(e, err) < 0) return -1;
  if (kbox_kernel_prepare(&e->kernel, &e->spec, err) < 0) return -1;
  e->kernel.how = "entrypoint";
  return kbox_guard_prepare(&e->kernel, &e->spec, err); /* --net allow, --audit (KBOX_AUDIT, profile) */
}

/* What the sandbox achieved: log it in one line, enforce KBOX_REQUIRE on it (a fallback the spec
   forbade already failed the start; this catches limits that are partial). */
static int report_achieved(struct entry *e, kbox_error_t *err) {
  kbox_pod_status_apply(&e->st, &e->sb.achieved, e->sb.cgroup);
  char line[2048];
  kbox_pod_status_summary(&e->st, line, sizeof(line));
  kbox_log(kbox_pod_status_complete(&e->st) ? KBOX_LOG_INFO : KBOX_LOG_WARN, "%s", line);
  /* the bound outer /proc shows our processes to the sandbox: keep their memory and environ closed */
  if (kbox_achieved_degraded(&e->sb.achieved, KBOX_STEP_PROC)) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  return kbox_pod_status_check(&e->st, e->required, err);
}

/* EG mode: a kernel that cannot start fails the gateway's request now, with the reason (see
   kbox_eg_failure_info), instead of after its launch timeout; then wait (bounded) for EG to remove
   the container, since EG reads the report only once it has seen the container running. */
static void report_failure_to_eg(struct entry *e, const char *reason) {
  if (!e->can_report || e->responded) return;
  e->can_report = false;
  kbox_error_t err = NULL;
  if (kbox_eg_send_failure(e->cfg.response_address, e->cfg.public_key, e->cfg.kernel_id, reason, &err) < 0) {
    kbox_error_report(&err);
    return;
  }
  kbox_log(KBOX_LOG_WARN, "failure reported to the gateway at %s; exiting once it removes the container (at most %d s)",
           e->cfg.response_address, EG_FAILURE_LINGER_S);
  sigset_t set;
  sigemptyset(&set);
  for (int i = 0; kbox_forwarded_signals[i]; i++) sigaddset(&set, kbox_forwarded_signals[i]);
  sigdelset(&set, SIGWINCH); /* a resized terminal is no reason to stop waiting */
  sigprocmask(SIG_BLOCK, &set, NULL);
  struct timespec ts = {EG_FAILURE_LINGER_S, 0};
  sigtimedwait(&set, NULL, &ts);
}

/* Report a failure: the log line, then EG (when it can be told); returns the exit code. */
static int fail(struct entry *e, kbox_error_t *err) {
  char reason[1024];
  snprintf(reason, sizeof(reason), "%s", *err != NULL ? (*err)->msg : "unknown error");
  int code = kbox_error_report(err);
  report_failure_to_eg(e, reason);
  return code;
}

/* Run the kernel until it ends; returns the exit status. */
static int serve(struct entry *e, int sigfd) {
  setpgid(e->sb.pid, e->sb.pid);
  kbox_error_t err = NULL;
  if (report_achieved(e, &err) < 0) {
    kbox_sandbox_kill(&e->sb);
    return fail(e, &err);
  }
  write_status(e, "running");
  pthread_t comm_t, resp_t;
  bool eg = e->cfg.mode == KBOX_REMOTE_EG;
  e->kernel.on_ready = on_kernel_ready;
  e->kernel.on_ready_data = e;
  if (eg) {
    pthread_create(&comm_t, NULL, comm_thread, e);
    pthread_create(&resp_t, NULL, response_thread, e);
  }
  kbox_kernel_supervise(&e->kernel, &e->sb, sigfd);
  e->stop = 1;
  wake_response(e);
  if (eg) {
    pthread_join(resp_t, NULL);
    pthread_join(comm_t, NULL);
  }
  kbox_sandbox_kill(&e->sb);
  char why[256];
  if (kbox_kernel_explain_end(&e->kernel, &e->sb, why, sizeof(why))) kbox_warn("%s", why);
  if (kbox_guard_active(&e->kernel)) { /* the verdict ends the audit log */
    json_t *v = kbox_report_build(&e->sb, NULL);
    json_object_set_new(v, "kernel", kbox_kernel_report(&e->kernel));
    kbox_guard_end(&e->kernel, v);
    json_decref(v);
  }
  int code = kbox_sandbox_exit_code(&e->sb);
  if (e->eg_failed) return KBOX_EXIT_RUNTIME;
  if (eg && !e->responded && e->kernel.ready_ms == 0 && e->kernel.ended_by == NULL) {
    kbox_error_make(&err, 0, "the kernel ended (exit code %d) before it answered kernel_info; its output is in the container's log", code);
    int c = fail(e, &err);
    return code != 0 ? code : c;
  }
  if (eg && e->responded && e->kernel.ready_ms == 0 && e->kernel.ended_by == NULL) {
    /* the gateway has the connection info already (KBOX_EG_RESPOND=listening) and learns of the
       end only from the container's exit; its restarter then starts a new one (docs/pods.md) */
    kbox_log(KBOX_LOG_ERROR, "the kernel ended (exit code %d) after it listened and before it answered kernel_info; "
             "its output is in the container's log (KBOX_EG_RESPOND=ready makes such a kernel fail the gateway's request instead)", code);
    return code != 0 ? code : KBOX_EXIT_RUNTIME;
  }
  if (e->kernel.ended_by != NULL && strcmp(e->kernel.ended_by, "idle_timeout") == 0) {
    kbox_log(KBOX_LOG_WARN, "idle for KERNEL_IDLE_TIMEOUT=%llus: culled", (unsigned long long)e->cfg.idle_timeout_s);
    return 0;
  }
  /* the pod was asked to stop and stopped: success, even when the kernel needed killing after
     its shutdown grace (the status would otherwise depend on how fast ipykernel tears down) */
  if (e->kernel.ended_by != NULL && strcmp(e->kernel.ended_by, "sigterm") == 0) return 0;
  return code;
}

int kbox_cmd_entrypoint(int argc, char **argv) {
  become_init_if_pid1();
  struct entry *e = xcalloc(1, sizeof(*e));
  cleanup_error kbox_error_t err = NULL;
  bool help = false, started = false;
  int code = 0, sigfd = -1;
  if (prepare(e, argc, argv, &help, &err) < 0 || help) {
    if (help) usage(stdout);
    else code = fail(e, &err);
  } else if ((sigfd = kbox_sandbox_signalfd(&err)) < 0 || kbox_sandbox_start(&e->sb, &e->spec, &err) < 0 ||
             kbox_kernel_open_broker(&e->kernel, &err) < 0 || kbox_guard_start(&e->kernel, &e->sb, &err) < 0) {
    code = fail(e, &err);
    started = sigfd >= 0;
  } else {
    started = true;
    code = serve(e, sigfd);
  }
  if (started) kbox_sandbox_destroy(&e->sb);
  kbox_guard_cleanup(&e->kernel);
  if (e->kernel.spec != NULL) kbox_kernel_cleanup(&e->kernel);
  kbox_comm_close(&e->comm);
  if (sigfd >= 0) close(sigfd);
  if (e->ready_fd >= 0) close(e->ready_fd);
  if (e->conn_path[0] != '\0') unlink(e->conn_path);
  if (e->dir[0] != '\0') rmdir(e->dir);
  if (e->spec.id != NULL) kbox_spec_free(&e->spec);
  kbox_remote_config_free(&e->cfg);
  free(e);
  return code;
}
