#include "kernel/client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "util/clock.h"

#define MAX_MSG (256u << 20)
#define GONE_GRACE_MS 1000 /* after the supervisor's exit: read what it sent last (kernel/pending.c) */

int kbox_client_open(struct kbox_client *c, const struct kbox_conn *conn, kbox_error_t *err) {
  memset(c, 0, sizeof(*c));
  kbox_frames_init(&c->buf);
  kbox_wire_new_id(c->session);
  if (kbox_auth_init(&c->auth, conn->scheme, conn->key, err) < 0) return -1;
  c->auth_ok = true;
  c->max_message = conn->max_message;
  c->ctx = zmq_ctx_new();
  if (c->ctx == NULL) return kbox_error_make(err, errno, "zmq_ctx_new");
  static const int types[KBOX_CL_N] = {ZMQ_DEALER, ZMQ_SUB, ZMQ_DEALER};
  static const enum kbox_channel chans[KBOX_CL_N] = {KBOX_CH_SHELL, KBOX_CH_IOPUB, KBOX_CH_CONTROL};
  for (int i = 0; i < KBOX_CL_N; i++) {
    c->sock[i] = zmq_socket(c->ctx, types[i]);
    if (c->sock[i] == NULL) return kbox_error_make(err, errno, "zmq_socket");
    int linger = 0;
    zmq_setsockopt(c->sock[i], ZMQ_LINGER, &linger, sizeof(linger));
    if (types[i] == ZMQ_SUB) zmq_setsockopt(c->sock[i], ZMQ_SUBSCRIBE, "", 0);
    char ep[512];
    kbox_conn_endpoint(conn, chans[i], ep, sizeof(ep));
    if (zmq_connect(c->sock[i], ep) < 0)
      return kbox_error_make(err, 0, "connecting to the kernel's %s channel %s: %s", kbox_channel_names[chans[i]], ep,
                             zmq_strerror(errno));
  }
  return 0;
}

void kbox_client_close(struct kbox_client *c) {
  for (int i = 0; i < KBOX_CL_N; i++)
    if (c->sock[i] != NULL) zmq_close(c->sock[i]);
  if (c->ctx != NULL) zmq_ctx_term(c->ctx);
  if (c->auth_ok) kbox_auth_free(&c->auth);
  kbox_frames_free(&c->buf);
  memset(c, 0, sizeof(*c));
}

/* Send a request on a channel; its msg_id goes to id. */
static int send_req(struct kbox_client *c, int ch, const char *type, json_t *content, char id[33]) {
  kbox_wire_build(&c->auth, &c->buf, NULL, 0, c->session, type, NULL, content, id);
  if (c->max_message != 0 && c->buf.bytes > c->max_message) { /* the broker would drop it */
    kbox_frames_clear(&c->buf);
    errno = EMSGSIZE;
    return -1;
  }
  return kbox_frames_send(c->sock[ch], &c->buf);
}

/* Receive one valid message from a channel: 1 with m filled, 0 when none waits, -1 on error.
   Unsigned/invalid messages are skipped. */
static int recv_msg(struct kbox_client *c, int ch, struct kbox_wire_msg *m) {
  for (;;) {
    bool too_big = false;
    int r = kbox_frames_recv(c->sock[ch], &c->buf, MAX_MSG, 4096, &too_big);
    if (r <= 0) return r;
    size_t delim;
    if (too_big || kbox_wire_check(&c->auth, &c->buf, &delim) != NULL) continue;
    if (kbox_wire_parse(&c->buf, delim, m) != NULL) continue;
    return 1;
  }
}

static bool parent_is(const struct kbox_wire_msg *m, const char *id) {
  const char *p = json_string_value(json_object_get(m->parent, "msg_id"));
  return p != NULL && strcmp(p, id) == 0;
}

/* Poll the three sockets (+ gone_fd) for up to wait_ms. Returns -1 on error, 1 when gone_fd fired. */
static int wait_any(struct kbox_client *c, long long wait_ms, int gone_fd) {
  zmq_pollitem_t items[KBOX_CL_N + 1];
  int n = 0;
  for (int i = 0; i < KBOX_CL_N; i++) items[n++] = (zmq_pollitem_t){.socket = c->sock[i], .events = ZMQ_POLLIN};
  if (gone_fd >= 0) items[n++] = (zmq_pollitem_t){.fd = gone_fd, .events = ZMQ_POLLIN};
  if (wait_ms < 0) wait_ms = 0;
  if (zmq_poll(items, n, (long)wait_ms) < 0) return errno == EINTR ? 0 : -1;
  if (gone_fd >= 0 && (items[KBOX_CL_N].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) return 1;
  return 0;
}

int kbox_client_wait_ready(struct kbox_client *c, int timeout_ms, int gone_fd, kbox_error_t *err) {
  long long deadline = kbox_now_ms() + timeout_ms, next = 0;
  char ids[64][33];
  size_t n_ids = 0;
  bool replied = false, iopub = false;
  while (!(replied && iopub)) {
    long long now = kbox_now_ms();
    if (now >= deadline) return kbox_error_make(err, 0, "the kernel did not answer kernel_info_request within %d s", timeout_ms / 1000);
    if (now >= next && n_ids < 64) {
      json_t *content = json_object();
      int r = send_req(c, KBOX_CL_SHELL, "kernel_info_request", content, ids[n_ids]);
      json_decref(content);
      if (r == 0) n_ids++;
      next = now + 500;
    }
    int w = wait_any(c, (next < deadline ? next : deadline) - now, gone_fd);
    if (w < 0) return kbox_error_make(err, errno, "waiting for the kernel");
    if (w > 0) return kbox_error_make(err, 0, "the kernel ended before it answered");
    for (int ch = 0; ch < KBOX_CL_N; ch++) {
      struct kbox_wire_msg m;
      while (recv_msg(c, ch, &m) == 1) {
        for (size_t i = 0; i < n_ids; i++)
          if (parent_is(&m, ids[i])) {
            if (ch == KBOX_CL_SHELL) replied = true;
            if (ch == KBOX_CL_IOPUB) iopub = true;
          }
        kbox_wire_msg_free(&m);
      }
    }
  }
  return 0;
}

/* Apply one iopub message of our request to out; returns true at status idle. */
static bool on_iopub(struct kbox_wire_msg *m, struct kbox_pyboxout *out) {
  const char *t = m->msg_type;
  json_t *lost = json_object_get(m->metadata, "kbox"); /* the broker dropped output (too large) */
  if (json_is_object(lost) && json_is_string(json_object_get(lost, "reason"))) {
    kbox_pyboxout_note_lost(out, (uint64_t)json_integer_value(json_object_get(lost, "dropped_bytes")),
                            json_string_value(json_object_get(lost, "reason")));
    return false;
  }
  if (strcmp(t, "execute_result") == 0 || strcmp(t, "display_data") == 0) {
    kbox_pyboxout_add_bundle(out, json_object_get(m->content, "data"));
  } else if (strcmp(t, "stream") == 0) {
    const char *name = json_string_value(json_object_get(m->content, "name"));
    const char *text = json_string_value(json_object_get(m->content, "text"));
    if (text != NULL) kbox_pyboxout_add_stream(out, name ? name : "stdout", text);
  } else if (strcmp(t, "error") == 0) {
    kbox_pyboxout_set_error(out, m->content);
  } else if (strcmp(t, "status") == 0) {
    const char *st = json_string_value(json_object_get(m->content, "execution_state"));
    return st != NULL && strcmp(st, "idle") == 0;
  }
  return false;
}

enum kbox_exec_end kbox_client_execute(struct kbox_client *c, const char *code, long long timeout_ms, int grace_ms,
                                       int gone_fd, struct kbox_pyboxout *out) {
  char id[33], int_id[33];
  json_t *content = json_pack("{s:s, s:b, s:b, s:{}, s:b, s:b}", "code", code, "silent", 0, "store_history", 1,
                              "user_expressions", "allow_stdin", 0, "stop_on_error", 1);
  int r = send_req(c, KBOX_CL_SHELL, "execute_request", content, id);
  json_decref(content);
  if (r < 0 && errno == EMSGSIZE) {
    char msg[200];
    snprintf(msg, sizeof(msg), "the cell (%zu bytes) makes an execute_request over the kernel's --max-message %llu bytes: "
             "it was not sent (raise --max-message)", strlen(code), c->max_message);
    kbox_pyboxout_set_kbox_error(out, "MessageTooLarge", msg);
    return KBOX_EXEC_RAISED;
  }
  if (r < 0) return KBOX_EXEC_FAILED;
  long long deadline = timeout_ms > 0 ? kbox_now_ms() + timeout_ms : -1;
  bool interrupted = false, idle = false;
  long long gone_at = 0; /* the kernel's supervisor ended: its last answers may still be on the way */
  while (!idle) {
    long long now = kbox_now_ms(), wait = deadline < 0 ? 1000 : deadline - now;
    if (gone_at != 0) {
      if (now - gone_at >= GONE_GRACE_MS) return KBOX_EXEC_GONE;
      wait = gone_at + GONE_GRACE_MS - now;
    } else if (deadline >= 0 && wait <= 0) {
      if (interrupted) return KBOX_EXEC_STUCK;
      json_t *empty = json_object();
      send_req(c, KBOX_CL_CONTROL, "interrupt_request", empty, int_id);
      json_decref(empty);
      out->timed_out = interrupted = true;
      deadline = now + grace_ms;
      continue;
    }
    int w = wait_any(c, wait, gone_fd);
    if (w < 0) return KBOX_EXEC_FAILED;
    struct kbox_wire_msg m;
    while (!idle && recv_msg(c, KBOX_CL_IOPUB, &m) == 1) {
      if (parent_is(&m, id)) idle = on_iopub(&m, out);
      kbox_wire_msg_free(&m);
    }
    for (int ch = KBOX_CL_SHELL; ch <= KBOX_CL_CONTROL; ch += 2) /* replies: only a refusal matters */
      while (recv_msg(c, ch, &m) == 1) {
        const char *ename = json_string_value(json_object_get(m.content, "ename"));
        bool refused = ch == KBOX_CL_SHELL && parent_is(&m, id) && ename != NULL && strcmp(ename, "MessageTooLarge") == 0;
        if (refused) kbox_pyboxout_set_error(out, m.content);
        kbox_wire_msg_free(&m);
        if (refused) return KBOX_EXEC_RAISED; /* the broker did not deliver it: no idle will come */
      }
    if (w > 0 && !idle && gone_at == 0) {
      gone_at = kbox_now_ms();
      gone_fd = -1;
    }
  }
  if (interrupted) return KBOX_EXEC_TIMEOUT;
  return out->error != NULL ? KBOX_EXEC_RAISED : KBOX_EXEC_OK;
}

int kbox_client_interrupt(struct kbox_client *c, int timeout_ms, kbox_error_t *err) {
  char id[33];
  json_t *empty = json_object();
  int r = send_req(c, KBOX_CL_CONTROL, "interrupt_request", empty, id);
  json_decref(empty);
  if (r < 0) return kbox_error_make(err, errno, "sending interrupt_request");
  long long deadline = kbox_now_ms() + timeout_ms;
  for (long long now = kbox_now_ms(); now < deadline; now = kbox_now_ms()) {
    if (wait_any(c, deadline - now, -1) < 0) break;
    struct kbox_wire_msg m;
    while (recv_msg(c, KBOX_CL_CONTROL, &m) == 1) {
      bool ours = parent_is(&m, id);
      kbox_wire_msg_free(&m);
      if (ours) return 0;
    }
    for (int ch = KBOX_CL_SHELL; ch <= KBOX_CL_IOPUB; ch++)
      while (recv_msg(c, ch, &m) == 1) kbox_wire_msg_free(&m);
  }
  return kbox_error_make(err, 0, "the kernel did not answer interrupt_request within %d s", timeout_ms / 1000);
}
