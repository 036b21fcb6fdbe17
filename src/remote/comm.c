#include "remote/comm.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/log.h"
#include "util/clock.h"

int kbox_comm_listen(struct kbox_comm *c, unsigned port, kbox_comm_signal_fn fn, void *data, kbox_error_t *err) {
  memset(c, 0, sizeof(*c));
  c->fd = -1;
  cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return kbox_error_make(err, errno, "comm port: socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) return kbox_error_make(err, errno, "comm port: bind 0.0.0.0:%u", port);
  if (listen(fd, 16) < 0) return kbox_error_make(err, errno, "comm port: listen");
  socklen_t len = sizeof(a);
  if (getsockname(fd, (struct sockaddr *)&a, &len) < 0) return kbox_error_make(err, errno, "comm port: getsockname");
  c->port = ntohs(a.sin_port);
  c->on_signal = fn;
  c->data = data;
  c->fd = steal_fd(fd);
  return 0;
}

void kbox_comm_close(struct kbox_comm *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

/* Reject a request with one log line. */
static int reject(struct kbox_comm *c, const char *why) {
  c->rejected++;
  kbox_warn("comm port: ignoring a request: %s", why);
  return -1;
}

int kbox_comm_handle_request(struct kbox_comm *c, const char *text, size_t len) {
  if (len > KBOX_COMM_MAX_REQUEST) return reject(c, "larger than 1024 bytes");
  json_error_t jerr;
  json_t *req = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (req == NULL || !json_is_object(req)) {
    json_decref(req);
    return reject(c, "not a JSON object");
  }
  json_t *sig = json_object_get(req, "signum");
  json_t *shut = json_object_get(req, "shutdown");
  int r = 0;
  if (sig != NULL) {
    json_int_t n = json_is_integer(sig) ? json_integer_value(sig) : -1;
    if (n < 0 || n >= NSIG) {
      r = reject(c, "signum is not a signal number");
    } else {
      if (c->on_signal != NULL && c->on_signal((int)n, c->data) < 0)
        kbox_warn("comm port: signal %d: the kernel is not running", (int)n);
      c->handled++;
    }
  } else if (shut != NULL) {
    if (json_is_integer(shut) && json_integer_value(shut) == 1) {
      kbox_info("comm port: shutdown requested; no longer listening");
      kbox_comm_close(c);
      c->handled++;
    } else {
      r = reject(c, "shutdown must be 1");
    }
  } else {
    r = reject(c, "neither signum nor shutdown");
  }
  json_decref(req);
  return r;
}

/* Does buf hold a complete JSON value yet? */
static bool complete_json(const char *buf, size_t len) {
  json_error_t jerr;
  json_t *v = json_loadb(buf, len, 0, &jerr);
  json_decref(v);
  return v != NULL;
}

/* Read one request (until EOF, a complete JSON value, too many bytes or the deadline) and act. */
static void serve(struct kbox_comm *c, int fd) {
  char buf[KBOX_COMM_MAX_REQUEST + 2];
  size_t len = 0;
  long long deadline = kbox_now_ms() + KBOX_COMM_READ_MS;
  for (;;) {
    long long left = deadline - kbox_now_ms();
    if (left <= 0) {
      reject(c, "the client sent no complete request in time");
      return;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)left) <= 0) continue;
    ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      reject(c, strerror(errno));
      return;
    }
    len += (size_t)n;
    if (n == 0 || len > KBOX_COMM_MAX_REQUEST || complete_json(buf, len)) break;
  }
  if (len == 0) {
    reject(c, "empty request");
    return;
  }
  kbox_comm_handle_request(c, buf, len);
}

void kbox_comm_on_readable(struct kbox_comm *c) {
  while (c->fd >= 0) {
    cleanup_close int conn = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) return;
    serve(c, conn);
  }
}
