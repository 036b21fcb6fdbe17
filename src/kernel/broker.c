#include "kernel/broker.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernel/audit.h"
#include "kernel/jscan.h"
#include "util/alloc.h"
#include "util/log.h"

#define BATCH 64            /* messages per socket per dispatch round */
#define MAX_FRAMES 4096     /* identities + parts + binary buffers */
#define HB_MAX_BYTES 65536
#define LOG_FIRST_DROPS 20  /* then one line every LOG_EVERY drops */
#define LOG_EVERY 1000
#define TRIM_AFTER_BYTES (1 << 20) /* hand freed heap back after this much traffic, once idle */
#define TRIM_IDLE_MS 200           /* "idle": nothing received for this long (not a momentarily empty queue) */
/* Message buffers up to this size come from the heap, not from a fresh mmap each, and freed heap
   stays until trim() (below) finds the broker idle: a stream of large iopub messages otherwise
   pays a page fault and a page clear for every 4 KB of every message (1 MB flushed prints: ~130
   faults per MB, a third of the broker's CPU per MB; now ~15). */
#define MSG_HEAP_MAX (32 << 20)
#define MSG_TRIM_AT (64 << 20)     /* free heap kept at the top during a burst; trim() returns it once idle */

/* Flow control and memory bounds (docs/kernel-broker.md). libzmq bounds its queues in messages;
   the broker adds byte accounting of what it hands to host iopub, and back-pressure: a source is
   not read while its destination cannot take more, so queues stay where their owner pays (the
   client's socket, or the kernel, inside its memory limit). */
#define SHELL_WINDOW KBOX_SHELL_WINDOW
#define WINDOW_STALL_MS 1000     /* a full window with the kernel idle and silent this long is reset */
#define WINDOW_STALL_BUSY_MS 10000 /* ... or with the kernel said busy and silent this long */
#define KERN_RECONNECT_MS 5      /* retry interval of the connections to the kernel's sockets */
#define HOST_RCVHWM 32           /* requests libzmq reads ahead per client connection */
#define HOST_SNDHWM 4096         /* replies queued per client connection */
#define IOPUB_HWM 64             /* messages queued per iopub subscriber */
#define KERN_IOPUB_RCVHWM 8      /* read-ahead from the kernel's iopub: its backlog stays in the kernel */
#define IOPUB_BUDGET (64u << 20) /* bytes of iopub libzmq may hold for all subscribers together */
#define IOPUB_HARD (256u << 20)  /* beyond this, large iopub messages are dropped for everyone */
#define IOPUB_SMALL (64u << 10)  /* still delivered while stuck subscribers hold IOPUB_HARD */
#define SLOW_JOINER_MS 2000      /* a subscriber that takes nothing this long is dropped for */
#define RETRY_MS 20              /* look at a full destination again at least this often */
#define SWEEP_MS 1000            /* look at every socket at least this often (a lost ZMQ_FD wake-up, see service) */
#define HANDSHAKE_MS 10000       /* ZMTP greeting deadline of a new connection */
#define INTERRUPT_EVERY_MS 1000  /* at most one interrupt forwarded per cell per second */
#define INTERRUPT_MIN_RUN_MS 200 /* a cell younger than this is left to end by itself (see kbox_broker_may_interrupt) */
#define KERN_MAX_FACTOR 4        /* kernel frames up to this many --max-message are read (and dropped, said);
                                    larger ones cut the connection inside libzmq before any allocation */

/* Count a dropped message and say why (rate-limited so a flood cannot flood the log). */
static void drop(struct kbox_broker *b, enum kbox_channel ch, bool from_client, const char *why) {
  b->dropped++;
  if (b->dropped <= LOG_FIRST_DROPS || b->dropped % LOG_EVERY == 0)
    kbox_log(KBOX_LOG_WARN, "broker: dropped a %s message %s the kernel: %s (%llu dropped so far)",
             kbox_channel_names[ch], from_client ? "to" : "from", why, b->dropped);
}

/* Socket number i of the poll set: host[0..N) then kern[0..N). */
static void *sock_at(struct kbox_broker *b, int i) { return i < KBOX_CH_N ? b->host[i] : b->kern[i - KBOX_CH_N]; }

#define BIT(i) (1u << (i))
#define KBIT(ch) (1u << (KBOX_CH_N + (ch)))

/* Does the span end with suffix (e.g. "_request")? */
static bool ends_with(const struct kbox_jspan *sp, const char *suffix) {
  size_t n = strlen(suffix);
  return sp->p != NULL && !sp->escaped && sp->n >= n && memcmp(sp->p + sp->n - n, suffix, n) == 0;
}

/* Send and remember that the socket was used: a send may consume the wake-up of its ZMQ_FD. */
static int send_at(struct kbox_broker *b, int i, struct kbox_frames *f) {
  b->touched |= 1u << i;
  return kbox_frames_send(sock_at(b, i), f);
}

static int set_int(void *s, int opt, int v) { return zmq_setsockopt(s, opt, &v, sizeof(v)); }

/* A socket with the options every broker socket shares. */
static void *new_socket(struct kbox_broker *b, int type, kbox_error_t *err) {
  void *s = zmq_socket(b->ctx, type);
  if (s == NULL) {
    kbox_error_make(err, errno, "zmq_socket");
    return NULL;
  }
  set_int(s, ZMQ_LINGER, 0);
  /* A connection that has not completed the ZMTP greeting by then is closed: idle unauthenticated
     connections cannot pile up (the open-file limit is the other bound; src/main.c raises it). */
  set_int(s, ZMQ_HANDSHAKE_IVL, HANDSHAKE_MS);
  return s;
}

/* Bind one host channel, choosing a port when none was given. */
static int bind_host(void *s, struct kbox_conn *c, enum kbox_channel ch, unsigned lo, unsigned hi, kbox_error_t *err) {
  char ep[400];
  bool ipc = strcmp(c->transport, "ipc") == 0;
  if (ipc && c->port[ch] == 0) {
    for (unsigned p = 1; p < 65536; p++) {
      char path[300];
      struct stat st;
      snprintf(path, sizeof(path), "%s-%u", c->ip, p);
      if (stat(path, &st) < 0 && errno == ENOENT) {
        c->port[ch] = p;
        break;
      }
    }
  }
  if (c->port[ch] != 0 || ipc) {
    kbox_conn_endpoint(c, ch, ep, sizeof(ep));
    if (zmq_bind(s, ep) < 0) return kbox_error_make(err, errno, "cannot bind the %s channel at %s", kbox_channel_names[ch], ep);
    return 0;
  }
  if (lo > 0) {
    for (unsigned p = lo; p <= hi; p++) {
      c->port[ch] = p;
      kbox_conn_endpoint(c, ch, ep, sizeof(ep));
      if (zmq_bind(s, ep) == 0) return 0;
    }
    c->port[ch] = 0;
    return kbox_error_make(err, 0, "--port-range %u..%u: no free port left for the %s channel", lo, hi, kbox_channel_names[ch]);
  }
  snprintf(ep, sizeof(ep), strchr(c->ip, ':') ? "tcp://[%s]:*" : "tcp://%s:*", c->ip);
  if (zmq_bind(s, ep) < 0) return kbox_error_make(err, errno, "cannot bind the %s channel at %s", kbox_channel_names[ch], ep);
  char last[400];
  size_t n = sizeof(last);
  zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, last, &n);
  const char *colon = strrchr(last, ':');
  c->port[ch] = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
  return 0;
}

static int open_host(struct kbox_broker *b, struct kbox_conn *host, unsigned lo, unsigned hi, kbox_error_t *err) {
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    /* iopub: XPUB, to see clients subscribe (iopub_welcome, protocol 5.5); every subscription,
       not just the first per topic, so each new client can be greeted. */
    void *s = new_socket(b, ch == KBOX_CH_IOPUB ? ZMQ_XPUB : ZMQ_ROUTER, err);
    if (s == NULL) return -1;
    b->host[ch] = s;
    int64_t maxmsg = ch == KBOX_CH_HB ? HB_MAX_BYTES : (int64_t)b->max_message;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    if (ch != KBOX_CH_IOPUB) {
      set_int(s, ZMQ_ROUTER_HANDOVER, 1);
      set_int(s, ZMQ_RCVHWM, HOST_RCVHWM);
      set_int(s, ZMQ_SNDHWM, HOST_SNDHWM);
    } else {
      set_int(s, ZMQ_XPUB_VERBOSE, 1);
      /* A full subscriber makes the send fail (EAGAIN) instead of silently dropping: the broker
         then pauses the kernel's iopub, and only after SLOW_JOINER_MS drops for that subscriber. */
      set_int(s, ZMQ_XPUB_NODROP, 1);
      set_int(s, ZMQ_SNDHWM, IOPUB_HWM);
    }
    if (bind_host(s, host, (enum kbox_channel)ch, lo, hi, err) < 0) return -1;
  }
  return 0;
}

static int open_kernel(struct kbox_broker *b, const struct kbox_conn *kern, kbox_error_t *err) {
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    void *s = new_socket(b, ch == KBOX_CH_IOPUB ? ZMQ_SUB : ZMQ_DEALER, err);
    if (s == NULL) return -1;
    b->kern[ch] = s;
    /* One identity on every channel, so the kernel's stdin ROUTER can route input_request to
       the identity it saw on shell. */
    if (ch != KBOX_CH_IOPUB) zmq_setsockopt(s, ZMQ_ROUTING_ID, "kbox", 4);
    else zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    /* The kernel's iopub backlog stays in the kernel's own queue (its memory limit pays); on the
       request/reply channels the kernel is paced by the shell window and replies are small. */
    set_int(s, ZMQ_RCVHWM, ch == KBOX_CH_IOPUB ? KERN_IOPUB_RCVHWM : 1000);
    int64_t maxmsg = ch == KBOX_CH_HB ? HB_MAX_BYTES : (int64_t)(b->max_message * KERN_MAX_FACTOR);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    /* The kernel binds after we connect: retry its endpoint every few ms, not libzmq's 100-200 ms,
       which a warm kernel would otherwise wait for (docs/warm.md). */
    set_int(s, ZMQ_RECONNECT_IVL, KERN_RECONNECT_MS);
    char ep[400];
    kbox_conn_endpoint(kern, (enum kbox_channel)ch, ep, sizeof(ep));
    if (zmq_connect(s, ep) < 0) return kbox_error_make(err, errno, "cannot connect to the kernel's %s socket %s", kbox_channel_names[ch], ep);
  }
  return 0;
}

int kbox_broker_open(struct kbox_broker *b, struct kbox_conn *host, const struct kbox_conn *kern,
                     unsigned port_lo, unsigned port_hi, size_t max_message, kbox_error_t *err) {
  memset(b, 0, sizeof(*b));
  b->max_message = max_message;
  kbox_frames_init(&b->buf);
  for (int ch = 0; ch < KBOX_CH_N; ch++) kbox_frames_init(&b->pend[ch]);
  kbox_frames_init(&b->held_int);
  atomic_init(&b->iopub_queued, 0);
  kbox_wire_new_id(b->session);
  char rnd[33];
  kbox_wire_new_id(rnd);
  snprintf(b->self_ident, sizeof(b->self_ident), "kbox-%.16s", rnd);
  b->last_activity_ms = b->kernel_heard_ms = kbox_now_ms();
  if (kbox_auth_init(&b->host_auth, host->scheme, host->key, err) < 0) return kbox_error_prefix(err, "host channels");
  if (kbox_auth_init(&b->kern_auth, kern->scheme, kern->key, err) < 0) return -1;
  /* One malloc arena: libzmq's I/O thread would otherwise get its own, which keeps the pages of
     every burst of messages it ever buffered (see also trim() below). */
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, MSG_HEAP_MAX);
  mallopt(M_TRIM_THRESHOLD, MSG_TRIM_AT);
  b->ctx = zmq_ctx_new();
  if (b->ctx == NULL) return kbox_error_make(err, errno, "zmq_ctx_new");
  if (open_host(b, host, port_lo, port_hi, err) < 0 || open_kernel(b, kern, err) < 0) return -1;
  if (kbox_peers_open(&b->peers, b->ctx, b->host, host, err) < 0) return -1; /* connections per port */
  for (int i = 0; i < KBOX_BROKER_NPOLL; i++) {
    size_t n = sizeof(b->fd[i]);
    if (zmq_getsockopt(sock_at(b, i), ZMQ_FD, &b->fd[i], &n) < 0) return kbox_error_make(err, errno, "ZMQ_FD");
  }
  b->recheck = (1u << KBOX_BROKER_NPOLL) - 1;
  return 0;
}

void kbox_broker_close(struct kbox_broker *b, int linger_ms) {
  kbox_peers_close(&b->peers);
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    if (b->host[ch] != NULL) {
      set_int(b->host[ch], ZMQ_LINGER, linger_ms);
      zmq_close(b->host[ch]);
    }
    if (b->kern[ch] != NULL) zmq_close(b->kern[ch]);
    b->host[ch] = b->kern[ch] = NULL;
    kbox_frames_free(&b->pend[ch]);
  }
  if (b->ctx != NULL) zmq_ctx_term(b->ctx);
  b->ctx = NULL;
  kbox_auth_free(&b->host_auth);
  kbox_auth_free(&b->kern_auth);
  kbox_frames_free(&b->buf);
  kbox_frames_free(&b->held_int);
  kbox_pending_free(&b->pending);
  free(b->exec_parent);
  b->exec_parent = NULL;
}

void kbox_broker_pollitems(struct kbox_broker *b, zmq_pollitem_t *items) {
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    items[ch] = (zmq_pollitem_t){.socket = b->host[ch], .events = ZMQ_POLLIN};
    items[KBOX_CH_N + ch] = (zmq_pollitem_t){.socket = b->kern[ch], .events = ZMQ_POLLIN};
  }
}

/* Index of the delimiter frame, or f->n when there is none. */
static size_t find_delim(const struct kbox_frames *f) {
  size_t d = 0;
  while (d < f->n && d <= KBOX_WIRE_MAX_IDENTS &&
         !(kbox_frame_size(f, d) == strlen(KBOX_WIRE_DELIM) && memcmp(kbox_frame_data(f, d), KBOX_WIRE_DELIM, strlen(KBOX_WIRE_DELIM)) == 0))
    d++;
  return d <= KBOX_WIRE_MAX_IDENTS ? d : f->n;
}

/* The string member key of JSON object part i of the message (span.p NULL when absent). */
static struct kbox_jspan member(const struct kbox_frames *f, size_t i, const char *key);

/* A shell request enters the kernel: it takes a place in the window under its msg_id. Returns
   the place (-1: none was free). */
static int window_take(struct kbox_broker *b, const struct kbox_frames *f) {
  size_t d = find_delim(f);
  struct kbox_jspan id = d + 2 < f->n ? member(f, d + 2, "msg_id") : (struct kbox_jspan){0};
  for (int i = 0; i < (int)(sizeof(b->window_id) / sizeof(b->window_id[0])); i++) {
    if (b->window_id[i][0] != '\0') continue;
    bool usable = id.p != NULL && !id.escaped && id.n > 0 && id.n < sizeof(b->window_id[i]);
    snprintf(b->window_id[i], sizeof(b->window_id[i]), "%.*s", usable ? (int)id.n : 1, usable ? id.p : "?");
    b->shell_inflight++;
    return i;
  }
  return -1; /* twice the window in flight: only the broker's own requests get here; not counted */
}

/* The request of place `at` did not go out after all. */
static void window_undo(struct kbox_broker *b, int at) {
  if (at < 0) return;
  b->window_id[at][0] = '\0';
  if (b->shell_inflight > 0) b->shell_inflight--;
}

/* The kernel is done with request ID (its reply, or its idle status, whichever comes first: a
   request of an unknown type or whose handler raised gets only the idle): its place is free. */
static void window_release(struct kbox_broker *b, const char *id, size_t n) {
  if (id == NULL || n == 0 || n >= sizeof(b->window_id[0])) return;
  for (size_t i = 0; i < sizeof(b->window_id) / sizeof(b->window_id[0]); i++)
    if (strncmp(b->window_id[i], id, n) == 0 && b->window_id[i][n] == '\0') {
      b->window_id[i][0] = '\0';
      if (b->shell_inflight > 0) b->shell_inflight--;
      return;
    }
}

/* Forget every place (the kernel went silent with the window full). */
static void window_reset(struct kbox_broker *b) {
  for (size_t i = 0; i < sizeof(b->window_id) / sizeof(b->window_id[0]); i++) b->window_id[i][0] = '\0';
  b->shell_inflight = 0;
}

/* Send the client message held for channel ch to the kernel, if the kernel's socket (and, on
   shell, the window) can take it. While it is held, the client socket is not read: requests wait
   in libzmq's per-client queues (fair-queued between clients) and in the clients' own sockets. */
static void flush_to_kernel(struct kbox_broker *b, enum kbox_channel ch) {
  struct kbox_frames *p = &b->pend[ch];
  if (p->n > 0) {
    if (ch == KBOX_CH_SHELL && b->pend_counted && b->shell_inflight >= SHELL_WINDOW) return;
    /* A failed try is not marked touched (that would spin); its wake-up, if consumed, is
       covered by the RETRY_MS timer. */
    bool counted = ch == KBOX_CH_SHELL && b->pend_counted;
    int at = counted ? window_take(b, p) : -1; /* before the send moves the frames away */
    if (kbox_frames_send_or_keep(b->kern[ch], p) < 0) {
      if (counted) window_undo(b, at);
      if (p->n > 0) return; /* EAGAIN: the kernel's queue is full; try again when it drains */
      drop(b, ch, true, zmq_strerror(errno));
    } else {
      b->touched |= KBIT(ch);
      b->forwarded++;
    }
  }
  if (b->blocked & BIT(ch)) b->touched |= BIT(ch); /* read that client socket again */
  b->blocked &= ~BIT(ch);
}

/* The reply part of the interrupt decision: answer interrupt_request ourselves with status ok
   (to the client in frame 0, parent = the request's header). */
static void answer_interrupt(struct kbox_broker *b, struct kbox_frames *f, enum kbox_channel ch, size_t delim) {
  json_t *parent = json_loadb(kbox_frame_data(f, delim + 2), kbox_frame_size(f, delim + 2), 0, NULL);
  json_t *c = json_pack("{s:s}", "status", "ok");
  struct kbox_frames out;
  kbox_frames_init(&out);
  kbox_wire_build(&b->host_auth, &out, delim > 0 ? kbox_frame_data(f, 0) : NULL, delim > 0 ? kbox_frame_size(f, 0) : 0,
                  b->session, "interrupt_reply", parent, c, NULL);
  json_decref(parent);
  json_decref(c);
  if (send_at(b, ch, &out) == 0) b->forwarded++;
  kbox_frames_free(&out);
  b->interrupts_answered++;
}

bool kbox_broker_may_interrupt(struct kbox_broker *b, long long now_ms) {
  if (!b->ready || b->shutting_down || !b->busy || b->exec_id[0] == '\0') return false;
  if (strcmp(b->interrupted_id, b->exec_id) == 0 && now_ms - b->interrupted_ms < INTERRUPT_EVERY_MS) return false;
  snprintf(b->interrupted_id, sizeof(b->interrupted_id), "%s", b->exec_id);
  b->interrupted_ms = now_ms;
  return true;
}

/* An interrupt_request for a cell younger than INTERRUPT_MIN_RUN_MS is held until the cell is that
   old, then forwarded if it still runs, else answered by the broker. Why: the busy status reaches
   the broker as the cell starts, the kernel's SIGINT lands as much later as the request takes, so
   for a short cell it lands after the cell, at the end of ipykernel's handler, where a
   KeyboardInterrupt between its signal-handler swaps ends the kernel (exit status 0). Plain
   ipykernel's interrupts arrive at random moments; gated on "a cell runs" they would cluster
   there. Returns true when the request was taken (held, or answered because one is held). */
static bool hold_interrupt(struct kbox_broker *b, enum kbox_channel ch, size_t delim, long long now) {
  if (!b->ready || b->shutting_down || !b->busy || b->exec_id[0] == '\0' || now - b->exec_started_ms >= INTERRUPT_MIN_RUN_MS)
    return false;
  if (b->held_int.n > 0) { /* one interrupt per cell is enough */
    answer_interrupt(b, &b->buf, ch, delim);
    return true;
  }
  kbox_frames_move(&b->held_int, &b->buf);
  b->held_int_ch = ch;
  b->held_int_delim = delim;
  snprintf(b->held_int_exec, sizeof(b->held_int_exec), "%s", b->exec_id);
  return true;
}

/* The held interrupt's cell ended (answer it) or is old enough (forward it). */
static void release_interrupt(struct kbox_broker *b, long long now) {
  if (b->held_int.n == 0) return;
  bool same = b->busy && strcmp(b->exec_id, b->held_int_exec) == 0;
  if (same && now - b->exec_started_ms < INTERRUPT_MIN_RUN_MS) return;
  enum kbox_channel ch = b->held_int_ch;
  if (same && kbox_broker_may_interrupt(b, now)) {
    kbox_wire_resign(&b->kern_auth, &b->held_int, b->held_int_delim);
    if (send_at(b, KBOX_CH_N + ch, &b->held_int) == 0) b->forwarded++;
  } else {
    answer_interrupt(b, &b->held_int, ch, b->held_int_delim);
  }
  kbox_frames_clear(&b->held_int);
}

/* A client message too large to forward: the sender learns why (an error reply naming
   --max-message, so it does not wait for a reply that cannot come), when enough of it was read
   to know what it was. */
static void refuse_too_big(struct kbox_broker *b, enum kbox_channel ch) {
  struct kbox_frames *f = &b->buf;
  size_t d = find_delim(f);
  if (ch == KBOX_CH_IOPUB || ch == KBOX_CH_HB || d == 0 || f->n < d + 3) return;
  /* The signature cannot be checked (the message was not read whole): the answer goes back only
     to the connection that sent it (frame 0, the ROUTER's identity) and carries nothing secret. */
  const char *const keys[] = {"msg_type", "msg_id"};
  struct kbox_jspan v[2];
  if (!kbox_jscan_object(kbox_frame_data(f, d + 2), kbox_frame_size(f, d + 2), keys, 2, v) || !ends_with(&v[0], "_request")) return;
  json_t *parent = json_loadb(kbox_frame_data(f, d + 2), kbox_frame_size(f, d + 2), 0, NULL);
  if (parent == NULL) return;
  char type[80];
  snprintf(type, sizeof(type), "%.*s_reply", (int)(v[0].n < 60 ? v[0].n - 8 : 52), v[0].p);
  char evalue[200];
  snprintf(evalue, sizeof(evalue), "the message (over %zu bytes) is larger than the kernel's --max-message %zu: it was not delivered",
           b->max_message, b->max_message);
  json_t *c = json_pack("{s:s, s:s, s:s, s:[]}", "status", "error", "ename", "MessageTooLarge", "evalue", evalue, "traceback");
  struct kbox_frames out;
  kbox_frames_init(&out);
  kbox_wire_build(&b->host_auth, &out, kbox_frame_data(f, 0), kbox_frame_size(f, 0), b->session, type, parent, c, NULL);
  json_decref(parent);
  json_decref(c);
  send_at(b, ch, &out);
  kbox_frames_free(&out);
}

/* Client -> kernel on shell/control/stdin. */
static void from_client(struct kbox_broker *b, enum kbox_channel ch, long long now) {
  struct kbox_frames *f = &b->buf;
  size_t delim = 0;
  struct kbox_jspan type;
  const char *why = kbox_wire_check_type(&b->host_auth, f, &delim, &type);
  if (why != NULL) return drop(b, ch, true, why);
  kbox_peers_spoke(&b->peers, ch, zmq_msg_get(&f->v[0], ZMQ_SRCFD)); /* a real client: never cut for room */
  b->last_activity_ms = now;
  /* A SIGINT (ipykernel's answer to interrupt_request) outside a cell can only hurt the kernel
     (start-up, shutdown, between handlers): then there is nothing to interrupt and we say so. */
  if (kbox_jspan_eq(&type, "interrupt_request") && hold_interrupt(b, ch, delim, now)) return;
  if (kbox_jspan_eq(&type, "interrupt_request") && !kbox_broker_may_interrupt(b, now)) return answer_interrupt(b, f, ch, delim);
  if (kbox_jspan_eq(&type, "shutdown_request")) b->shutting_down = true;
  /* The first frame is the client identity the ROUTER added: keep it as the prefix the kernel
     will echo back, so the reply can be routed to this client. */
  kbox_audit_on_client(b->audit, ch, f, delim, now);
  kbox_wire_resign(&b->kern_auth, f, delim);
  if (ch == KBOX_CH_SHELL) kbox_pending_add(&b->pending, f, delim); /* answered if the kernel dies */
  b->pend_counted = ch == KBOX_CH_SHELL && ends_with(&type, "_request");
  kbox_frames_move(&b->pend[ch], f);
  b->blocked |= BIT(ch);
  flush_to_kernel(b, ch);
  if (b->blocked & BIT(ch)) b->backpressure++;
}

/* A reply to one of the broker's own requests. */
static void own_reply(struct kbox_broker *b, size_t delim) {
  struct kbox_wire_msg m;
  if (kbox_wire_parse(&b->buf, delim, &m) != NULL) return;
  if (strcmp(m.msg_type, "kernel_info_reply") == 0) b->ready = true;
  else if (strcmp(m.msg_type, "shutdown_reply") == 0) b->shutdown_replied = true;
  kbox_wire_msg_free(&m);
}

/* Is frame 0 the broker's own identity? */
static bool is_own(struct kbox_broker *b, const struct kbox_frames *f) {
  size_t n = strlen(b->self_ident);
  return f->n > 0 && kbox_frame_size(f, 0) == n && memcmp(kbox_frame_data(f, 0), b->self_ident, n) == 0;
}

/* Why messages from the kernel are checked for form but their signature is not verified:
   - the kernel's key is in the sandbox (kernel.json); anything that can write to the kernel's
     sockets runs in the sandbox with that key, so a valid signature proves nothing more than
     "came from the sandbox", which the socket already tells us;
   - the broker re-signs every message with the client key anyway, so verification could not
     stop a forged message from a compromised kernel either: it only cost a second HMAC pass over
     every byte of output (half the broker's CPU on large iopub streams).
   What does matter, and stays: the form (delimiter, four JSON-object parts, a header with
   msg_id/msg_type) so clients get well-formed messages, the size limits, and in the other
   direction the full signature check, which is what keeps anyone without the client key from
   executing code in the kernel. */
#define KERNEL_AUTH NULL

/* Kernel -> client on shell/control/stdin. */
static void from_kernel(struct kbox_broker *b, enum kbox_channel ch, long long now) {
  struct kbox_frames *f = &b->buf;
  size_t delim = 0;
  struct kbox_jspan type;
  const char *why = kbox_wire_check_type(KERNEL_AUTH, f, &delim, &type);
  if (why != NULL) return drop(b, ch, false, why);
  b->kernel_heard_ms = now;
  if (ch == KBOX_CH_SHELL && ends_with(&type, "_reply") && delim + 3 < f->n) {
    struct kbox_jspan parent = member(f, delim + 3, "msg_id");
    if (!parent.escaped) window_release(b, parent.p, parent.n);
    if (b->blocked & BIT(KBOX_CH_SHELL)) flush_to_kernel(b, KBOX_CH_SHELL);
  }
  if (delim == 0) return drop(b, ch, false, "no client identity to route the reply to");
  if (is_own(b, f)) return own_reply(b, delim);
  if (ch == KBOX_CH_SHELL) kbox_pending_replied(&b->pending, f, delim);
  kbox_audit_on_kernel(b->audit, ch, f, delim, kbox_now_ms());
  kbox_wire_resign(&b->host_auth, f, delim);
  /* ROUTER without ROUTER_MANDATORY: a gone or slow client's message is dropped, never blocks. */
  if (send_at(b, ch, f) == 0) b->forwarded++;
}

/* The string member key of JSON object part i of the message (span.p NULL when absent). */
static struct kbox_jspan member(const struct kbox_frames *f, size_t i, const char *key) {
  const char *const keys[] = {key};
  struct kbox_jspan v = {0};
  if (!kbox_jscan_object(kbox_frame_data(f, i), kbox_frame_size(f, i), keys, 1, &v)) v.p = NULL;
  return v;
}

/* Keep the parent header of the running execute_request (for kbox_broker_publish_stream). */
static void keep_parent(struct kbox_broker *b, const struct kbox_frames *f, size_t i) {
  free(b->exec_parent);
  b->exec_parent_len = kbox_frame_size(f, i);
  b->exec_parent = xmalloc(b->exec_parent_len + 1);
  memcpy(b->exec_parent, kbox_frame_data(f, i), b->exec_parent_len);
}

void kbox_broker_publish_stream(struct kbox_broker *b, const char *name, const char *text) {
  json_t *parent = NULL;
  if (b->exec_id[0] != '\0' && b->exec_parent != NULL) parent = json_loadb(b->exec_parent, b->exec_parent_len, 0, NULL);
  json_t *c = json_pack("{s:s, s:s}", "name", name, "text", text);
  static const char topic[] = "kernel.kbox.stream";
  struct kbox_frames out; /* not b->buf: this may run while b->buf holds the message being routed */
  kbox_frames_init(&out);
  kbox_wire_build(&b->host_auth, &out, topic, sizeof(topic) - 1, b->session, "stream", parent, c, NULL);
  json_decref(c);
  json_decref(parent);
  if (send_at(b, KBOX_CH_IOPUB, &out) == 0) b->forwarded++;
  kbox_frames_free(&out);
}

/* Follow execution_state and the running execute_request from iopub status messages. */
static void track_status(struct kbox_broker *b, size_t delim, long long now) {
  const struct kbox_frames *f = &b->buf;
  struct kbox_jspan type = member(f, delim + 2, "msg_type");
  if (!kbox_jspan_eq(&type, "status")) return;
  struct kbox_jspan state = member(f, delim + 5, "execution_state");
  const char *const pkeys[] = {"msg_type", "msg_id"};
  struct kbox_jspan parent[2];
  if (!kbox_jscan_object(kbox_frame_data(f, delim + 3), kbox_frame_size(f, delim + 3), pkeys, 2, parent))
    parent[0].p = parent[1].p = NULL;
  bool pid_usable = parent[1].p != NULL && !parent[1].escaped && parent[1].n < sizeof(b->exec_id);
  if (kbox_jspan_eq(&state, "busy")) {
    b->busy = true;
    if (pid_usable && kbox_jspan_eq(&parent[0], "execute_request")) {
      memcpy(b->exec_id, parent[1].p, parent[1].n);
      b->exec_id[parent[1].n] = '\0';
      b->exec_started_ms = now;
      keep_parent(b, f, delim + 3);
      b->exec_hook_due = b->exec_hook != NULL; /* called once the busy status went out */
    }
  } else if (kbox_jspan_eq(&state, "idle")) {
    b->busy = false;
    b->last_activity_ms = now;
    if (b->exec_hook != NULL && b->exec_id[0] != '\0') b->exec_hook(b->exec_hook_ctx, b);
    if (pid_usable && b->exec_id[0] != '\0' && kbox_jspan_eq(&parent[1], b->exec_id)) b->exec_id[0] = '\0';
    if (pid_usable) kbox_pending_idle(&b->pending, parent[1].p, parent[1].n);
    if (pid_usable) window_release(b, parent[1].p, parent[1].n);
    if (pid_usable && (b->blocked & BIT(KBOX_CH_SHELL))) flush_to_kernel(b, KBOX_CH_SHELL);
  }
}

/* Cheap test for a status message: the header mentions "status" as msg_type. */
static bool is_status(const struct kbox_frames *f, size_t delim) {
  const char *h = kbox_frame_data(f, delim + 2);
  size_t n = kbox_frame_size(f, delim + 2);
  return memmem(h, n, "\"status\"", 8) != NULL;
}

/* Protocol 5.5 (ipykernel 7): the kernel's iopub is an XPUB that greets every new subscriber
   with an iopub_welcome, so a client knows its subscription is live. Behind the broker the kernel
   only ever sees the broker's own subscription: the broker drops that greeting and greets each
   client itself (signed with the client key), but only once the kernel has shown it speaks 5.5,
   so clients of older kernels never get a message type they do not expect. */
static void welcome(struct kbox_broker *b, const char *topic, size_t n) {
  json_t *c = json_pack("{s:s%}", "subscription", topic, n);
  if (c == NULL) return; /* a topic that is not UTF-8 */
  kbox_wire_build(&b->host_auth, &b->buf, topic, n, b->session, "iopub_welcome", NULL, c, NULL);
  json_decref(c);
  if (send_at(b, KBOX_CH_IOPUB, &b->buf) == 0) b->forwarded++;
}

/* A client (un)subscribed on the host iopub XPUB: one frame, 1 or 0 then the topic. */
static void subscription(struct kbox_broker *b) {
  const struct kbox_frames *f = &b->buf;
  if (f->n != 1 || kbox_frame_size(f, 0) < 1 || kbox_frame_size(f, 0) > 257) return;
  const unsigned char *p = kbox_frame_data(f, 0);
  if (p[0] != 1) return;
  kbox_peers_spoke(&b->peers, KBOX_CH_IOPUB, zmq_msg_get(&f->v[0], ZMQ_SRCFD));
  char topic[256];
  size_t n = kbox_frame_size(f, 0) - 1;
  memcpy(topic, p + 1, n);
  kbox_frames_clear(&b->buf);
  if (b->kernel_welcomes) welcome(b, topic, n);
  else b->welcome_owed = true;
}

/* The kernel greeted the broker's subscription: it speaks 5.5; greet whoever subscribed so far. */
static bool kernel_welcome(struct kbox_broker *b, size_t delim) {
  const struct kbox_frames *f = &b->buf;
  if (memmem(kbox_frame_data(f, delim + 2), kbox_frame_size(f, delim + 2), "\"iopub_welcome\"", 15) == NULL) return false;
  struct kbox_jspan type = member(f, delim + 2, "msg_type");
  if (!kbox_jspan_eq(&type, "iopub_welcome")) return false;
  kbox_frames_clear(&b->buf);
  b->kernel_welcomes = true;
  if (b->welcome_owed) welcome(b, "", 0); /* the empty topic reaches every subscriber */
  b->welcome_owed = false;
  return true;
}

/* What libzmq still holds of one iopub message: the original frame, freed with its count. */
struct held {
  zmq_msg_t orig;
  size_t bytes;
  atomic_size_t *queued;
};

/* libzmq's free callback (any thread, once the last subscriber's copy was written out). */
static void held_free(void *data, void *hint) {
  (void)data;
  struct held *h = hint;
  atomic_fetch_sub(h->queued, h->bytes);
  zmq_msg_close(&h->orig);
  free(h);
}

/* Count the message's bytes in iopub_queued until libzmq lets go of it: its largest frame is
   handed over by reference (no copy) with a free callback that uncounts the whole message. */
static void account(struct kbox_broker *b, struct kbox_frames *f) {
  size_t big = 0;
  for (size_t i = 1; i < f->n; i++)
    if (kbox_frame_size(f, i) > kbox_frame_size(f, big)) big = i;
  struct held *h = xmalloc(sizeof(*h));
  h->bytes = f->bytes;
  h->queued = &b->iopub_queued;
  zmq_msg_init(&h->orig);
  zmq_msg_move(&h->orig, &f->v[big]);
  size_t now = atomic_fetch_add(&b->iopub_queued, h->bytes) + h->bytes;
  if (now > b->iopub_peak) b->iopub_peak = now;
  if (zmq_msg_init_data(&f->v[big], zmq_msg_data(&h->orig), zmq_msg_size(&h->orig), held_free, h) != 0) kbox_oom(); /* its only failure: ENOMEM */
}

/* Send one iopub message lossily (to the subscribers that can take it). */
static void send_lossy(struct kbox_broker *b, struct kbox_frames *p) {
  void *s = b->host[KBOX_CH_IOPUB];
  set_int(s, ZMQ_XPUB_NODROP, 0);
  b->touched |= BIT(KBOX_CH_IOPUB);
  if (kbox_frames_send(s, p) == 0) b->forwarded++;
  set_int(s, ZMQ_XPUB_NODROP, 1);
}

/* Hand the pending iopub message to host iopub. A subscriber whose queue is full, or subscribers
   holding IOPUB_BUDGET bytes, pause the kernel's iopub (back-pressure: the kernel's own queue
   grows, inside its memory limit). A pause longer than SLOW_JOINER_MS means a subscriber that
   does not read: one lossy send makes libzmq skip its full queue from then on (the episode is
   counted and logged), while the others get everything; should stuck subscribers ever hold
   IOPUB_HARD bytes, large messages are dropped for everyone (counted as drops). */
static void flush_iopub(struct kbox_broker *b, long long now) {
  struct kbox_frames *p = &b->pend[KBOX_CH_IOPUB];
  if (p->n == 0) goto done;
  size_t others = atomic_load(&b->iopub_queued) - p->bytes;
  bool over = others >= IOPUB_BUDGET, hard = others >= IOPUB_HARD;
  if (!over) {
    if (kbox_frames_send_or_keep(b->host[KBOX_CH_IOPUB], p) == 0) {
      b->touched |= BIT(KBOX_CH_IOPUB);
      b->forwarded++;
      /* libzmq now skips the full subscriber (its queue is inactive until it drains), so a send
         that works again ends the episode, whether or not that subscriber reads. */
      b->iopub_slow = false;
      b->iopub_stall_ms = 0;
      goto done;
    }
    if (p->n == 0) goto done; /* an error other than EAGAIN */
  }
  if (!b->iopub_slow) {
    if (b->iopub_stall_ms == 0) {
      b->iopub_stall_ms = now;
      b->backpressure++;
    }
    if (now - b->iopub_stall_ms < SLOW_JOINER_MS) {
      b->blocked |= BIT(KBOX_CH_IOPUB);
      return;
    }
    b->iopub_slow = true;
    b->slow_subscribers++;
    kbox_log(KBOX_LOG_WARN, "broker: an iopub subscriber took nothing for %d s (%zu bytes queued): dropping iopub messages "
             "for it until it reads (slow joiner)", SLOW_JOINER_MS / 1000, atomic_load(&b->iopub_queued));
  }
  if (hard && p->bytes > IOPUB_SMALL) {
    b->dropped_slow++;
    drop(b, KBOX_CH_IOPUB, false, "stuck iopub subscribers hold the whole iopub budget");
    kbox_frames_clear(p);
  } else {
    send_lossy(b, p);
  }
done:
  if (b->blocked & BIT(KBOX_CH_IOPUB)) b->touched |= KBIT(KBOX_CH_IOPUB);
  b->blocked &= ~BIT(KBOX_CH_IOPUB);
}

/* Kernel iopub -> clients. */
static void from_iopub(struct kbox_broker *b, long long now) {
  struct kbox_frames *f = &b->buf;
  size_t delim = 0;
  const char *why = kbox_wire_check(KERNEL_AUTH, f, &delim);
  if (why != NULL) return drop(b, KBOX_CH_IOPUB, false, why);
  b->kernel_heard_ms = now;
  if (kernel_welcome(b, delim)) return;
  if (is_status(f, delim)) track_status(b, delim, now);
  kbox_audit_on_iopub(b->audit, f, delim);
  kbox_wire_resign(&b->host_auth, f, delim);
  account(b, f);
  kbox_frames_move(&b->pend[KBOX_CH_IOPUB], f);
  flush_iopub(b, now);
  if (b->exec_hook_due) { /* the busy status is on its way: the cell's held notices may follow */
    b->exec_hook_due = false;
    b->exec_hook(b->exec_hook_ctx, b);
  }
}

/* Heartbeat frames go through untouched (they are not Jupyter messages). */
static void hb(struct kbox_broker *b, bool from_client) {
  if (b->buf.n > 8) return drop(b, KBOX_CH_HB, from_client, "too many heartbeat frames");
  if (from_client) kbox_peers_spoke(&b->peers, KBOX_CH_HB, zmq_msg_get(&b->buf.v[0], ZMQ_SRCFD));
  send_at(b, from_client ? KBOX_CH_N + KBOX_CH_HB : KBOX_CH_HB, &b->buf);
}

/* An iopub message of the kernel too large to forward: its clients learn that output of their
   request was dropped, by a stream message on stderr (parent = the dropped message's parent,
   metadata {"kbox": {"dropped_bytes": N, "reason": ...}}), so `kbox exec` reports truncated. */
static void tell_too_big(struct kbox_broker *b, enum kbox_channel ch) {
  struct kbox_frames *f = &b->buf;
  size_t d = find_delim(f);
  if (ch != KBOX_CH_IOPUB || d + 3 >= f->n) return;
  json_t *parent = json_loadb(kbox_frame_data(f, d + 3), kbox_frame_size(f, d + 3), 0, NULL);
  if (!json_is_object(parent)) {
    json_decref(parent);
    return;
  }
  char reason[160];
  snprintf(reason, sizeof(reason), "an output message of the kernel was larger than --max-message %zu bytes and was dropped", b->max_message);
  char text[200];
  snprintf(text, sizeof(text), "[kbox: %s]\n", reason);
  json_t *c = json_pack("{s:s, s:s}", "name", "stderr", "text", text);
  json_t *meta = json_pack("{s:{s:I, s:s}}", "kbox", "dropped_bytes", (json_int_t)f->bytes, "reason", reason);
  struct kbox_frames out;
  kbox_frames_init(&out);
  kbox_wire_build(&b->host_auth, &out, "kbox.dropped", 12, b->session, "stream", parent, c, NULL);
  char *m = json_dumps(meta, JSON_COMPACT);
  if (m != NULL) {
    kbox_frames_set(&out, 5, m, strlen(m)); /* ident, delimiter, signature, header, parent, metadata */
    kbox_wire_resign(&b->host_auth, &out, 1);
  }
  free(m);
  json_decref(meta);
  json_decref(parent);
  json_decref(c);
  send_lossy(b, &out);
  kbox_frames_free(&out);
}

/* The blocked bits that stop reading socket idx: the source whose message waits for its
   destination is not read (back-pressure). */
static unsigned stop_bits(int idx) {
  enum kbox_channel ch = (enum kbox_channel)(idx % KBOX_CH_N);
  if (idx < KBOX_CH_N) return ch != KBOX_CH_IOPUB && ch != KBOX_CH_HB ? BIT(ch) : 0;
  return ch == KBOX_CH_IOPUB ? BIT(ch) : 0;
}

/* Read up to BATCH messages from one socket and route them. */
static void pump(struct kbox_broker *b, int idx, long long now) {
  bool client = idx < KBOX_CH_N;
  enum kbox_channel ch = (enum kbox_channel)(idx % KBOX_CH_N);
  void *s = sock_at(b, idx);
  size_t max = ch == KBOX_CH_HB ? HB_MAX_BYTES : b->max_message;
  unsigned stop = stop_bits(idx);
  for (int i = 0; i < BATCH; i++) {
    if (b->blocked & stop) return;
    bool too_big = false;
    int r = kbox_frames_recv(s, &b->buf, max, MAX_FRAMES, &too_big);
    if (r <= 0) return; /* EAGAIN: the socket re-arms its ZMQ_FD for the next message */
    b->since_trim += b->buf.bytes + 256;
    b->last_rx_ms = now;
    if (too_big) {
      drop(b, ch, client, "message larger than --max-message (or too many frames)");
      if (client) refuse_too_big(b, ch);
      else tell_too_big(b, ch);
      kbox_frames_clear(&b->buf);
      continue;
    }
    if (ch == KBOX_CH_HB) hb(b, client);
    else if (client && ch == KBOX_CH_IOPUB) subscription(b);
    else if (client) from_client(b, ch, now);
    else if (ch == KBOX_CH_IOPUB) from_iopub(b, now);
    else from_kernel(b, ch, now);
    kbox_frames_clear(&b->buf);
  }
  b->touched |= 1u << idx; /* stopped at BATCH: more may be waiting */
}

void kbox_broker_dispatch(struct kbox_broker *b, const zmq_pollitem_t *items, long long now_ms) {
  for (int i = 0; i < KBOX_BROKER_NPOLL; i++)
    if (items[i].revents & ZMQ_POLLIN) pump(b, i, now_ms);
  kbox_frames_clear(&b->buf);
}

int kbox_broker_request(struct kbox_broker *b, enum kbox_channel ch, const char *msg_type, json_t *content) {
  kbox_wire_build(&b->kern_auth, &b->buf, b->self_ident, strlen(b->self_ident), b->session, msg_type, NULL,
                  content, NULL);
  int at = ch == KBOX_CH_SHELL ? window_take(b, &b->buf) : -1; /* its reply frees the place, like a client's */
  if (strcmp(msg_type, "shutdown_request") == 0) b->shutting_down = true;
  int rc = send_at(b, KBOX_CH_N + ch, &b->buf);
  if (rc < 0 && ch == KBOX_CH_SHELL) window_undo(b, at);
  b->recheck |= b->touched;
  b->touched = 0;
  return rc;
}

/* After a burst of traffic, once idle: return the freed heap (message buffers, queue chunks)
   to the system, so kbox's resident size goes back down instead of staying at its peak. */
static void trim(struct kbox_broker *b, long long now) {
  /* Not between two messages of a stream: the next one would fault in (and clear) every page of
     its buffer again, which cost more CPU than the HMAC on large iopub output. */
  if (b->since_trim < TRIM_AFTER_BYTES || now - b->last_rx_ms < TRIM_IDLE_MS) return;
  malloc_trim(0);
  b->since_trim = 0;
}

void kbox_broker_pollfds(struct kbox_broker *b, struct pollfd *pfd) {
  for (int i = 0; i < KBOX_BROKER_NPOLL; i++) pfd[i] = (struct pollfd){.fd = b->fd[i], .events = POLLIN};
}

/* ZMQ_FD only says "look at ZMQ_EVENTS", and any operation on a socket (a send too) may consume
   that wake-up. So a socket is looked at when its fd fired or when it was used since its
   ZMQ_EVENTS was last read, and the loop sleeps only once every socket looked at is empty.
   This replaces zmq_poll, which reads ZMQ_EVENTS of every socket twice per call (a syscall each):
   more than a hundred syscalls per execute_request. */
/* Retry what waits for a full destination; reset a shell window that cannot drain (requests the
   kernel never answers: unknown types, handlers that raised) once the kernel is idle and silent. */
static void unblock(struct kbox_broker *b, long long now) {
  b->last_service_ms = now;
  release_interrupt(b, now);
  if (b->blocked == 0) return;
  /* busy may be stale (an idle status the kernel's own PUB dropped): a much longer silence
     resets the window too; a long cell then merely gets a few more requests queued behind it */
  long long silent = now - b->kernel_heard_ms;
  if ((b->blocked & BIT(KBOX_CH_SHELL)) && b->shell_inflight >= SHELL_WINDOW &&
      ((!b->busy && silent >= WINDOW_STALL_MS) || silent >= WINDOW_STALL_BUSY_MS)) {
    kbox_log(KBOX_LOG_DEBUG, "broker: %u shell requests unanswered with the kernel idle: window reset", b->shell_inflight);
    window_reset(b);
  }
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    if (!(b->blocked & BIT(ch))) continue;
    if (ch == KBOX_CH_IOPUB) flush_iopub(b, now);
    else flush_to_kernel(b, (enum kbox_channel)ch);
  }
}

/* Socket i can take messages again (or, for XPUB, may): send what waited for it. */
static void retry_into(struct kbox_broker *b, int i, long long now) {
  if (i == KBOX_CH_IOPUB && (b->blocked & BIT(KBOX_CH_IOPUB))) flush_iopub(b, now);
  else if (i >= KBOX_CH_N && i != KBOX_CH_N + KBOX_CH_IOPUB && (b->blocked & BIT(i - KBOX_CH_N)))
    flush_to_kernel(b, (enum kbox_channel)(i - KBOX_CH_N));
}

/* When a source waiting for a full destination, or the heap's trim once idle, is due (0: none). */
static long long retry_at(const struct kbox_broker *b) {
  long long trim_at = b->since_trim >= TRIM_AFTER_BYTES ? b->last_rx_ms + TRIM_IDLE_MS : 0; /* trim() once idle */
  if (b->blocked == 0) return trim_at;
  long long at = b->last_service_ms + RETRY_MS;
  if ((b->blocked & BIT(KBOX_CH_SHELL)) && b->shell_inflight >= SHELL_WINDOW) {
    long long w = b->kernel_heard_ms + (b->busy ? WINDOW_STALL_BUSY_MS : WINDOW_STALL_MS);
    if (b->blocked == BIT(KBOX_CH_SHELL)) at = w; /* replies wake the window: no need to poll */
  }
  return trim_at != 0 && trim_at < at ? trim_at : at;
}

long long kbox_broker_next_ms(const struct kbox_broker *b) {
  long long at = retry_at(b), sweep = b->swept_ms + SWEEP_MS;
  if (at == 0 || sweep < at) at = sweep;
  if (b->held_int.n > 0) { /* the held interrupt's cell is old enough then (its idle wakes us earlier) */
    long long h = b->exec_started_ms + INTERRUPT_MIN_RUN_MS;
    if (at == 0 || h < at) at = h;
  }
  return at;
}

json_t *kbox_broker_stats(const struct kbox_broker *b) {
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "messages_forwarded", (json_int_t)b->forwarded,
                   "messages_dropped", (json_int_t)b->dropped, "iopub_slow_subscribers", (json_int_t)b->slow_subscribers,
                   "iopub_dropped_for_all", (json_int_t)b->dropped_slow,
                   "interrupts_answered_by_broker", (json_int_t)b->interrupts_answered,
                   "backpressure_pauses", (json_int_t)b->backpressure, "iopub_queued_peak_bytes", (json_int_t)b->iopub_peak,
                   "connections_cut", (json_int_t)b->peers.cut, "lost_wakeups", (json_int_t)b->lost_wakeups);
}

bool kbox_broker_service(struct kbox_broker *b, const struct pollfd *pfd, long long now_ms) {
  unblock(b, now_ms);
  unsigned check = b->recheck | b->touched;
  for (int i = 0; i < KBOX_BROKER_NPOLL; i++)
    if (pfd[i].revents != 0) check |= 1u << i;
  b->touched = 0;
  /* Every SWEEP_MS, every socket is looked at even if its ZMQ_FD did not fire: a wake-up that some
     operation consumed unnoticed would otherwise leave messages waiting until the next traffic
     (a fuzzed kernel's probe once waited over a minute with the broker asleep and nothing held).
     A sweep that finds a readable socket nobody woke us for is counted (lost_wakeups). */
  unsigned swept = 0;
  if (now_ms - b->swept_ms >= SWEEP_MS) {
    b->swept_ms = now_ms;
    swept = ((1u << KBOX_BROKER_NPOLL) - 1) & ~check;
    check |= swept;
  }
  /* A few rounds, each at most BATCH messages per socket, then back to the caller (signals,
     the pidfd and deadlines must not starve under a flood). */
  for (int round = 0; round < 4 && check != 0; round++) {
    for (int i = 0; i < KBOX_BROKER_NPOLL; i++) {
      if (!(check & (1u << i))) continue;
      /* a swept socket whose fd is readable now would have woken us: not a lost wake-up */
      bool unsignalled = (swept & (1u << i)) && poll(&(struct pollfd){.fd = b->fd[i], .events = POLLIN}, 1, 0) == 0;
      uint32_t ev = 0;
      size_t n = sizeof(ev);
      if (zmq_getsockopt(sock_at(b, i), ZMQ_EVENTS, &ev, &n) < 0) continue;
      if (ev & ZMQ_POLLOUT) retry_into(b, i, now_ms);
      if ((ev & ZMQ_POLLIN) && unsignalled && !(b->blocked & stop_bits(i))) {
        b->lost_wakeups++;
        kbox_log(KBOX_LOG_WARN, "broker: the %s %s socket held messages without waking the broker (%llu times so far)",
                 i < KBOX_CH_N ? "client" : "kernel", kbox_channel_names[i % KBOX_CH_N], b->lost_wakeups);
      }
      if (ev & ZMQ_POLLIN) pump(b, i, now_ms);
    }
    swept = 0;
    /* Sockets just used must be read again: empty ones drop out after one ZMQ_EVENTS call. */
    check = b->touched;
    b->touched = 0;
  }
  kbox_frames_clear(&b->buf);
  b->recheck = check;
  if (check == 0) trim(b, now_ms);
  return check != 0;
}
