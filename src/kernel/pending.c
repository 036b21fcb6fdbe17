#include "kernel/pending.h"

#include <stdlib.h>
#include <string.h>

#include "kernel/jscan.h"
#include "util/alloc.h"

static void req_free(struct kbox_pending_req *r) {
  free(r->ident);
  json_decref(r->header);
}

static void remove_at(struct kbox_pending *p, size_t i) {
  req_free(&p->v[i]);
  memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(p->v[0]));
  p->n--;
}

static struct kbox_pending_req *find(struct kbox_pending *p, const char *id, size_t n) {
  for (size_t i = 0; i < p->n; i++)
    if (strlen(p->v[i].msg_id) == n && memcmp(p->v[i].msg_id, id, n) == 0) return &p->v[i];
  return NULL;
}

/* Forget a request once both its reply and its idle went out. */
static void settle(struct kbox_pending *p, struct kbox_pending_req *r) {
  if (r->replied && r->idle) remove_at(p, (size_t)(r - p->v));
}

/* Does msg_type end in _request (a reply is due)? */
static bool wants_reply(const char *type) {
  size_t n = strlen(type);
  return n > 8 && strcmp(type + n - 8, "_request") == 0;
}

void kbox_pending_add(struct kbox_pending *p, const struct kbox_frames *f, size_t delim) {
  if (delim == 0) return;
  json_t *h = json_loadb(kbox_frame_data(f, delim + 2), kbox_frame_size(f, delim + 2), 0, NULL);
  const char *id = json_string_value(json_object_get(h, "msg_id"));
  const char *type = json_string_value(json_object_get(h, "msg_type"));
  if (id == NULL || type == NULL || strlen(id) >= sizeof(p->v[0].msg_id) || find(p, id, strlen(id)) != NULL) {
    json_decref(h);
    return;
  }
  if (p->n == KBOX_PENDING_MAX) remove_at(p, 0);
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 8;
    p->v = xrealloc(p->v, p->cap * sizeof(p->v[0]));
  }
  struct kbox_pending_req *r = &p->v[p->n++];
  memset(r, 0, sizeof(*r));
  r->ident_len = kbox_frame_size(f, 0);
  r->ident = xmalloc(r->ident_len + 1);
  memcpy(r->ident, kbox_frame_data(f, 0), r->ident_len);
  r->header = h;
  snprintf(r->msg_id, sizeof(r->msg_id), "%s", id);
  r->execute = strcmp(type, "execute_request") == 0;
  r->replied = !wants_reply(type);
}

void kbox_pending_replied(struct kbox_pending *p, const struct kbox_frames *f, size_t delim) {
  if (p->n == 0) return;
  const char *const keys[] = {"msg_id"};
  struct kbox_jspan id = {0};
  if (!kbox_jscan_object(kbox_frame_data(f, delim + 3), kbox_frame_size(f, delim + 3), keys, 1, &id) ||
      id.p == NULL || id.escaped)
    return;
  struct kbox_pending_req *r = find(p, id.p, id.n);
  if (r == NULL) return;
  r->replied = true;
  settle(p, r);
}

void kbox_pending_idle(struct kbox_pending *p, const char *msg_id, size_t n) {
  struct kbox_pending_req *r = msg_id != NULL ? find(p, msg_id, n) : NULL;
  if (r == NULL) return;
  r->idle = true;
  settle(p, r);
}

/* Build and send one message; 0 when it went out. */
static int send_one(void *sock, struct kbox_auth *auth, const void *ident, size_t ident_len, const char *session,
                    const char *type, json_t *parent, json_t *content) {
  struct kbox_frames f;
  kbox_frames_init(&f);
  kbox_wire_build(auth, &f, ident, ident_len, session, type, parent, content, NULL);
  int rc = kbox_frames_send(sock, &f);
  kbox_frames_free(&f);
  return rc;
}

/* The reply type of a request type: execute_request -> execute_reply. */
static char *reply_type(json_t *header) {
  const char *t = json_string_value(json_object_get(header, "msg_type"));
  size_t n = strlen(t) - 8;
  char *out = xmalloc(n + 7);
  memcpy(out, t, n);
  memcpy(out + n, "_reply", 7);
  return out;
}

size_t kbox_pending_answer(struct kbox_pending *p, void *shell, void *iopub, struct kbox_auth *auth,
                           const char *session, const char *ename, const char *evalue) {
  static const char topic_err[] = "kernel.kbox.error", topic_status[] = "kernel.kbox.status";
  size_t answered = 0;
  json_t *tb = json_pack("[s]", evalue);
  for (size_t i = 0; i < p->n; i++) {
    struct kbox_pending_req *r = &p->v[i];
    if (!r->replied) {
      json_t *c = json_pack("{s:s, s:s, s:O}", "ename", ename, "evalue", evalue, "traceback", tb);
      if (r->execute) send_one(iopub, auth, topic_err, sizeof(topic_err) - 1, session, "error", r->header, c);
      json_object_set_new(c, "status", json_string("error"));
      char *type = reply_type(r->header);
      send_one(shell, auth, r->ident, r->ident_len, session, type, r->header, c);
      free(type);
      json_decref(c);
    }
    if (!r->idle) {
      json_t *c = json_pack("{s:s}", "execution_state", "idle");
      send_one(iopub, auth, topic_status, sizeof(topic_status) - 1, session, "status", r->header, c);
      json_decref(c);
    }
    answered++;
  }
  json_decref(tb);
  kbox_pending_free(p);
  return answered;
}

json_t *kbox_pending_header(struct kbox_pending *p, const char *msg_id) {
  struct kbox_pending_req *r = find(p, msg_id, strlen(msg_id));
  return r != NULL ? r->header : NULL;
}

void kbox_pending_free(struct kbox_pending *p) {
  for (size_t i = 0; i < p->n; i++) req_free(&p->v[i]);
  free(p->v);
  memset(p, 0, sizeof(*p));
}
