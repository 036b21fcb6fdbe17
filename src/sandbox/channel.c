#include "sandbox/channel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int send_msg(int fd, const struct kbox_msg *m, kbox_error_t *err) {
  for (;;) {
    ssize_t w = send(fd, m, sizeof(*m), MSG_NOSIGNAL);
    if (w == (ssize_t)sizeof(*m)) return 0;
    if (w < 0 && errno == EINTR) continue;
    return kbox_error_make(err, w < 0 ? errno : EIO, "sending to the sandbox channel");
  }
}

int kbox_msg_send(int fd, int type, int status, kbox_error_t *err) {
  struct kbox_msg m = {.type = type, .status = status};
  return send_msg(fd, &m, err);
}

int kbox_msg_send_text(int fd, int type, int status, const char *text, kbox_error_t *err) {
  struct kbox_msg m = {.type = type, .status = status};
  snprintf(m.text, sizeof(m.text), "%s", text);
  return send_msg(fd, &m, err);
}

void kbox_msg_send_error(int fd, kbox_error_t *error) {
  struct kbox_msg m = {.type = KBOX_MSG_ERROR, .exit_code = KBOX_EXIT_RUNTIME};
  if (error != NULL && *error != NULL) {
    m.exit_code = (*error)->exit_code;
    m.errno_ = (*error)->errno_;
    snprintf(m.text, sizeof(m.text), "%s", (*error)->msg);
  }
  kbox_error_t ignored = NULL;
  send_msg(fd, &m, &ignored);
  kbox_error_free(&ignored);
}

int kbox_msg_recv(int fd, struct kbox_msg *m, kbox_error_t *err) {
  for (;;) {
    ssize_t r = recv(fd, m, sizeof(*m), 0);
    if (r == 0) return 0;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return kbox_error_make(err, errno, "reading the sandbox channel");
    if (r != (ssize_t)sizeof(*m)) return kbox_error_make(err, 0, "short message on the sandbox channel");
    m->text[sizeof(m->text) - 1] = '\0';
    return 1;
  }
}
