/* The Jupyter wire protocol over ZMQ: multipart frames, HMAC signatures, checks, building and
   parsing messages. Used by the broker and reusable by clients (kbox exec). */
#ifndef KBOX_KERNEL_WIRE_H
#define KBOX_KERNEL_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

#include "util/error.h"

#define KBOX_WIRE_DELIM "<IDS|MSG>"
#define KBOX_WIRE_MAX_IDENTS 32 /* identity frames allowed before the delimiter */

/* One multipart message as received from or sent to a socket. */
struct kbox_frames {
  zmq_msg_t *v;
  size_t n, cap;
  size_t bytes; /* total payload size */
};

void kbox_frames_init(struct kbox_frames *f);
/* Close every frame (the vector is kept for reuse). */
void kbox_frames_clear(struct kbox_frames *f);
void kbox_frames_free(struct kbox_frames *f);
/* Append a copy of data as a new frame. */
void kbox_frames_add(struct kbox_frames *f, const void *data, size_t len);
static inline void *kbox_frame_data(const struct kbox_frames *f, size_t i) { return zmq_msg_data(&f->v[i]); }
static inline size_t kbox_frame_size(const struct kbox_frames *f, size_t i) { return zmq_msg_size(&f->v[i]); }
/* Replace frame i with a copy of data. */
void kbox_frames_set(struct kbox_frames *f, size_t i, const void *data, size_t len);

/* Receive one whole multipart message without blocking. Returns 1 with the frames in f (cleared
   first), 0 when nothing is waiting, -1 on a socket error. When the message exceeds max_bytes in
   total or max_frames frames, the rest is read and thrown away and *too_big is set. */
int kbox_frames_recv(void *sock, struct kbox_frames *f, size_t max_bytes, size_t max_frames, bool *too_big);
/* Send all frames without blocking; the frames are consumed (f is left empty) either way.
   Returns 0, or -1 with errno (EAGAIN: the peer's queue is full and the message was dropped). */
int kbox_frames_send(void *sock, struct kbox_frames *f);
/* The same, except that when the socket cannot take the message (EAGAIN on its first part:
   nothing was queued) the frames stay in f, to be sent again once the socket can take them. */
int kbox_frames_send_or_keep(void *sock, struct kbox_frames *f);
/* Move the frames of src into dst (dst's are closed first); src is left empty. */
void kbox_frames_move(struct kbox_frames *dst, struct kbox_frames *src);

/* Signing state for one key. */
struct kbox_auth {
  void *mac_ctx;   /* EVP_MAC_CTX, keyed once (schemes other than hmac-sha256) */
  struct kbox_hmac256 *sha256; /* hmac-sha256: the pre-keyed pads (kernel/hmac256.h) */
  size_t hexlen;   /* length of a hex signature, 0 when unsigned (empty key) */
};

/* scheme "hmac-sha256" (also hmac-sha1, hmac-sha512, hmac-md5); an empty key disables signing. */
int kbox_auth_init(struct kbox_auth *a, const char *scheme, const char *key, kbox_error_t *err);
void kbox_auth_free(struct kbox_auth *a);
/* Hex signature over the four JSON parts into hex (>= 129 bytes); "" when unsigned. */
void kbox_auth_sign(struct kbox_auth *a, const void *const part[4], const size_t len[4], char *hex);

/* Check that frames form a Jupyter message: a delimiter within the first KBOX_WIRE_MAX_IDENTS
   frames, a signature and four JSON-object parts, a header with msg_id and msg_type, and a valid
   signature (constant-time compare; a == NULL checks the form only). Returns NULL when fine (with *delim = index of the
   delimiter), else a short static reason. */
const char *kbox_wire_check(struct kbox_auth *a, const struct kbox_frames *f, size_t *delim);
/* The same, also giving the header's raw msg_type (the span points into the header frame). */
struct kbox_jspan;
const char *kbox_wire_check_type(struct kbox_auth *a, const struct kbox_frames *f, size_t *delim,
                                 struct kbox_jspan *msg_type);
/* Replace the signature of a checked message with one made by another key. */
void kbox_wire_resign(struct kbox_auth *a, struct kbox_frames *f, size_t delim);

/* A parsed message. */
struct kbox_wire_msg {
  json_t *header, *parent, *metadata, *content;
  const char *msg_type; /* borrowed from header */
  const char *msg_id;
};
/* Parse the JSON parts of a checked message. Returns NULL or a static reason. */
const char *kbox_wire_parse(const struct kbox_frames *f, size_t delim, struct kbox_wire_msg *m);
void kbox_wire_msg_free(struct kbox_wire_msg *m);

/* A fresh msg_id/session id: 32 lowercase hex characters. */
void kbox_wire_new_id(char out[33]);
/* Build a signed message: [ident (if identlen > 0), delimiter, signature, header, parent,
   metadata, content]. parent may be NULL ({}); content is not stolen. The header's msg_id is
   copied to msg_id_out when not NULL. */
void kbox_wire_build(struct kbox_auth *a, struct kbox_frames *out, const void *ident, size_t identlen,
                     const char *session, const char *msg_type, json_t *parent, json_t *content,
                     char msg_id_out[33]);

#endif
