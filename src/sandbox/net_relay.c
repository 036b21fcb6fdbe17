#include "sandbox/net_relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/proc.h"

#define MAX_PAIRS 256
#define RBUF 16384

struct pair {
  int in, out;            /* workload side (tcp), proxy side (unix) */
  char a[RBUF], b[RBUF];  /* in -> out, out -> in */
  size_t al, bl;
  bool in_eof, out_eof;
};

/* Move what is readable from fd into buf; *eof once fd is finished. */
static void take(int fd, char *buf, size_t *len, bool *eof) {
  if (*eof || *len == RBUF) return;
  ssize_t r = read(fd, buf + *len, RBUF - *len);
  if (r > 0) *len += (size_t)r;
  else if (r == 0 || (errno != EAGAIN && errno != EINTR)) *eof = true;
}

/* Write buf to fd; false when the peer is gone. */
static bool give(int fd, char *buf, size_t *len) {
  if (*len == 0) return true;
  ssize_t w = send(fd, buf, *len, MSG_NOSIGNAL);
  if (w < 0) return errno == EAGAIN || errno == EINTR;
  memmove(buf, buf + w, *len - (size_t)w);
  *len -= (size_t)w;
  return true;
}

/* One step of a pair; false when it should be closed. */
static bool step(struct pair *p, short ein, short eout) {
  if (ein & (POLLIN | POLLHUP | POLLERR)) take(p->in, p->a, &p->al, &p->in_eof);
  if (eout & (POLLIN | POLLHUP | POLLERR)) take(p->out, p->b, &p->bl, &p->out_eof);
  if (!give(p->out, p->a, &p->al) || !give(p->in, p->b, &p->bl)) return false;
  if (p->in_eof && p->al == 0) shutdown(p->out, SHUT_WR);
  if (p->out_eof && p->bl == 0) shutdown(p->in, SHUT_WR);
  /* Done once the proxy side ended and everything it sent was delivered (a refusal or the end of
     a response: the workload's side has nothing more to say that anyone would read). */
  return !(p->out_eof && p->bl == 0);
}

static int connect_proxy(const char *path) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

__attribute__((noreturn)) static void relay(int lfd, const char *path) {
  static struct pair *pairs[MAX_PAIRS];
  size_t n = 0;
  struct pollfd pfd[1 + 2 * MAX_PAIRS];
  for (;;) {
    pfd[0] = (struct pollfd){.fd = lfd, .events = n < MAX_PAIRS ? POLLIN : 0};
    for (size_t i = 0; i < n; i++) {
      struct pair *p = pairs[i];
      pfd[1 + 2 * i] = (struct pollfd){.fd = p->in, .events = (short)((p->in_eof || p->al == RBUF ? 0 : POLLIN) | (p->bl ? POLLOUT : 0))};
      pfd[2 + 2 * i] = (struct pollfd){.fd = p->out, .events = (short)((p->out_eof || p->bl == RBUF ? 0 : POLLIN) | (p->al ? POLLOUT : 0))};
    }
    if (poll(pfd, 1 + 2 * n, -1) < 0 && errno != EINTR) _exit(1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      struct pair *p = pairs[i];
      if (step(p, pfd[1 + 2 * i].revents, pfd[2 + 2 * i].revents)) {
        pairs[k++] = p;
        continue;
      }
      close(p->in);
      close(p->out);
      free(p);
    }
    n = k;
    if (!(pfd[0].revents & POLLIN)) continue;
    int in = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (in < 0) continue;
    int out = connect_proxy(path);
    struct pair *p = out >= 0 ? calloc(1, sizeof(*p)) : NULL;
    if (p == NULL) {
      close(in);
      if (out >= 0) close(out);
      continue;
    }
    p->in = in;
    p->out = out;
    pairs[n++] = p;
  }
}

pid_t kbox_net_relay_start(const char *sock_path, kbox_error_t *err) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) return kbox_error_make(err, errno, "--net: relay socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(KBOX_NET_RELAY_PORT), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 128) < 0) {
    close(lfd);
    return kbox_error_make(err, errno, "--net: relay on 127.0.0.1:%d", KBOX_NET_RELAY_PORT);
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(lfd);
    return kbox_error_make(err, errno, "--net: fork of the relay");
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* Nothing of pid 1 (its channel to the host, its signalfd) stays open in the relay. */
    kbox_close_fds_except(3, lfd);
    prctl(PR_SET_NAME, "kbox-net-relay", 0, 0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);
    relay(lfd, sock_path);
  }
  close(lfd);
  return pid;
}
