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
#include "util/log.h"

#define BATCH 64            /* messages per socket per dispatch round */
#define MAX_FRAMES 4096     /* identities + parts + binary buffers */
#define HB_MAX_BYTES 65536
#define LOG_FIRST_DROPS 20  /* then one line every LOG_EVERY drops */
#define LOG_EVERY 1000
#define TRIM_AFTER_BYTES (1 << 20) /* hand freed heap back after this much traffic, once idle */

long long kbox_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Count a dropped message and say why (rate-limited so a flood cannot flood the log). */
static void drop(struct kbox_broker *b, enum kbox_channel ch, bool from_client, const char *why) {
  b->dropped++;
  if (b->dropped <= LOG_FIRST_DROPS || b->dropped % LOG_EVERY == 0)
    kbox_log(KBOX_LOG_WARN, "broker: dropped a %s message %s the kernel: %s (%llu dropped so far)",
             kbox_channel_names[ch], from_client ? "to" : "from", why, b->dropped);
}

/* Socket number i of the poll set: host[0..N) then kern[0..N). */
static void *sock_at(struct kbox_broker *b, int i) { return i < KBOX_CH_N ? b->host[i] : b->kern[i - KBOX_CH_N]; }

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
    if (ch != KBOX_CH_IOPUB) set_int(s, ZMQ_ROUTER_HANDOVER, 1);
    else set_int(s, ZMQ_XPUB_VERBOSE, 1);
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
    set_int(s, ZMQ_RCVHWM, 0);
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
  kbox_wire_new_id(b->session);
  char rnd[33];
  kbox_wire_new_id(rnd);
  snprintf(b->self_ident, sizeof(b->self_ident), "kbox-%.16s", rnd);
  b->last_activity_ms = kbox_now_ms();
  if (kbox_auth_init(&b->host_auth, host->scheme, host->key, err) < 0) return kbox_error_prefix(err, "host channels");
  if (kbox_auth_init(&b->kern_auth, kern->scheme, kern->key, err) < 0) return -1;
  /* One malloc arena: libzmq's I/O thread would otherwise get its own, which keeps the pages of
     every burst of messages it ever buffered (see also trim() below). */
  mallopt(M_ARENA_MAX, 1);
  b->ctx = zmq_ctx_new();
  if (b->ctx == NULL) return kbox_error_make(err, errno, "zmq_ctx_new");
  if (open_host(b, host, port_lo, port_hi, err) < 0 || open_kernel(b, kern, err) < 0) return -1;
  for (int i = 0; i < KBOX_BROKER_NPOLL; i++) {
    size_t n = sizeof(b->fd[i]);
    if (zmq_getsockopt(sock_at(b, i), ZMQ_FD, &b->fd[i], &n) < 0) return kbox_error_make(err, errno, "ZMQ_FD");
  }
  b->recheck = (1u << KBOX_BROKER_NPOLL) - 1;
  return 0;
}

void kbox_broker_close(struct kbox_broker *b, int linger_ms) {
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    if (b->host[ch] != NULL) {
      set_int(b->host[ch], ZMQ_LINGER, linger_ms);
      zmq_close(b->host[ch]);
    }
    if (b->kern[ch] != NULL) zmq_close(b->kern[ch]);
    b->host[ch] = b->kern[ch] = NULL;
  }
  if (b->ctx != NULL) zmq_ctx_term(b->ctx);
  b->ctx = NULL;
  kbox_auth_free(&b->host_auth);
  kbox_auth_free(&b->kern_auth);
  kbox_frames_free(&b->buf);
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

/* Client -> kernel on shell/control/stdin. */
static void from_client(struct kbox_broker *b, enum kbox_channel ch, long long now) {
  struct kbox_frames *f = &b->buf;
  size_t delim = 0;
  const char *why = kbox_wire_check(&b->host_auth, f, &delim);
  if (why != NULL) return drop(b, ch, true, why);
  /* The first frame is the client identity the ROUTER added: keep it as the prefix the kernel
     will echo back, so the reply can be routed to this client. */
  kbox_audit_on_client(b->audit, ch, f, delim, now);
  kbox_wire_resign(&b->kern_auth, f, delim);
  if (ch == KBOX_CH_SHELL) kbox_pending_add(&b->pending, f, delim);
  b->last_activity_ms = now;
  if (send_at(b, KBOX_CH_N + ch, f) < 0) drop(b, ch, true, errno == EAGAIN ? "the kernel's queue is full" : zmq_strerror(errno));
  else b->forwarded++;
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
static void from_kernel(struct kbox_broker *b, enum kbox_channel ch) {
  struct kbox_frames *f = &b->buf;
  size_t delim = 0;
  const char *why = kbox_wire_check(KERNEL_AUTH, f, &delim);
  if (why != NULL) return drop(b, ch, false, why);
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
  b->exec_parent = malloc(b->exec_parent_len + 1);
  if (b->exec_parent == NULL) abort();
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

/* Kernel iopub -> clients. */
static void from_iopub(struct kbox_broker *b, long long now) {
  struct kbox_frames *f = &b->buf;
  size_t delim = 0;
  const char *why = kbox_wire_check(KERNEL_AUTH, f, &delim);
  if (why != NULL) return drop(b, KBOX_CH_IOPUB, false, why);
  if (kernel_welcome(b, delim)) return;
  if (is_status(f, delim)) track_status(b, delim, now);
  kbox_audit_on_iopub(b->audit, f, delim);
  kbox_wire_resign(&b->host_auth, f, delim);
  if (send_at(b, KBOX_CH_IOPUB, f) == 0) b->forwarded++;
  if (b->exec_hook_due) {
    b->exec_hook_due = false;
    b->exec_hook(b->exec_hook_ctx, b);
  }
}

/* Heartbeat frames go through untouched (they are not Jupyter messages). */
static void hb(struct kbox_broker *b, bool from_client) {
  if (b->buf.n > 8) return drop(b, KBOX_CH_HB, from_client, "too many heartbeat frames");
  send_at(b, from_client ? KBOX_CH_N + KBOX_CH_HB : KBOX_CH_HB, &b->buf);
}

/* Read up to BATCH messages from one socket and route them. */
static void pump(struct kbox_broker *b, int idx, long long now) {
  bool client = idx < KBOX_CH_N;
  enum kbox_channel ch = (enum kbox_channel)(idx % KBOX_CH_N);
  void *s = sock_at(b, idx);
  size_t max = ch == KBOX_CH_HB ? HB_MAX_BYTES : b->max_message;
  for (int i = 0; i < BATCH; i++) {
    bool too_big = false;
    int r = kbox_frames_recv(s, &b->buf, max, MAX_FRAMES, &too_big);
    if (r <= 0) return; /* EAGAIN: the socket re-arms its ZMQ_FD for the next message */
    b->since_trim += b->buf.bytes + 256;
    if (too_big) {
      drop(b, ch, client, "message larger than --max-message (or too many frames)");
      continue;
    }
    if (ch == KBOX_CH_HB) hb(b, client);
    else if (client && ch == KBOX_CH_IOPUB) subscription(b);
    else if (client) from_client(b, ch, now);
    else if (ch == KBOX_CH_IOPUB) from_iopub(b, now);
    else from_kernel(b, ch);
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
  int rc = send_at(b, KBOX_CH_N + ch, &b->buf);
  b->recheck |= b->touched;
  b->touched = 0;
  return rc;
}

/* After a burst of traffic, once idle: return the freed heap (message buffers, queue chunks)
   to the system, so kbox's resident size goes back down instead of staying at its peak. */
static void trim(struct kbox_broker *b) {
  if (b->since_trim < TRIM_AFTER_BYTES) return;
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
bool kbox_broker_service(struct kbox_broker *b, const struct pollfd *pfd, long long now_ms) {
  unsigned check = b->recheck | b->touched;
  for (int i = 0; i < KBOX_BROKER_NPOLL; i++)
    if (pfd[i].revents != 0) check |= 1u << i;
  b->touched = 0;
  /* A few rounds, each at most BATCH messages per socket, then back to the caller (signals,
     the pidfd and deadlines must not starve under a flood). */
  for (int round = 0; round < 4 && check != 0; round++) {
    for (int i = 0; i < KBOX_BROKER_NPOLL; i++) {
      if (!(check & (1u << i))) continue;
      uint32_t ev = 0;
      size_t n = sizeof(ev);
      if (zmq_getsockopt(sock_at(b, i), ZMQ_EVENTS, &ev, &n) == 0 && (ev & ZMQ_POLLIN)) pump(b, i, now_ms);
    }
    /* Sockets just used must be read again: empty ones drop out after one ZMQ_EVENTS call. */
    check = b->touched;
    b->touched = 0;
  }
  kbox_frames_clear(&b->buf);
  b->recheck = check;
  if (check == 0) trim(b);
  return check != 0;
}
