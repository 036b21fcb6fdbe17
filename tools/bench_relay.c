/* Benchmark helper (not a test): the floor of ANY userspace relay in front of a Jupyter kernel. A
   raw byte relay on one epoll loop, one thread: it parses nothing (ZMTP stays end to end between
   the client's libzmq and the kernel's, so the relay is transparent), it only accepts the
   client's TCP connections on 127.0.0.1 and copies bytes to and from the kernel's ipc sockets
   with read/write. What it costs per execute is what a ZMTP-native broker could at best get to,
   before it parses, checks or signs anything.

   Usage: bench_relay IPC_PREFIX PORT...   (the kernel's sockets are IPC_PREFIX-PORT)
   Prints one line, "PORT=LISTEN_PORT ..." for each kernel port, then relays until stdin closes.
   Built by tools/bench-kernel.py with `cc -O2` when build/tools/bench_relay is missing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PORTS 8
#define BUF (256 * 1024)

/* One direction of one relayed connection: bytes read from `from`, not yet all written to `to`. */
struct half {
  int from, to;
  char *buf;
  size_t len, off;
  struct half *peer; /* the other direction of the same connection */
  uint32_t mask;     /* the events `from` is registered for */
};

struct listener {
  int fd;
  char path[108];
};

static int ep;

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* The events fd should wait for: readable when its read side has room, writable when the half
   writing to it has bytes left. Each fd is `from` of one half and `to` of the other. */
static void rearm(struct half *h) {
  /* h->from is also h->peer->to */
  struct epoll_event e = {.events = 0, .data.ptr = h};
  if (h->len == 0) e.events |= EPOLLIN;
  if (h->peer->len > h->peer->off) e.events |= EPOLLOUT;
  if (e.events == h->mask) return; /* the common case: no syscall */
  h->mask = e.events;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, h->from, &e) < 0) die("epoll_ctl");
}

static void close_pair(struct half *h) {
  close(h->from);
  close(h->to);
  free(h->buf);
  free(h->peer->buf);
  free(h->peer);
  free(h);
}

/* Write what h holds to h->to; true while the connection lives. */
static int flush_half(struct half *h) {
  while (h->off < h->len) {
    ssize_t w = write(h->to, h->buf + h->off, h->len - h->off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return 1;
    if (w <= 0) return 0;
    h->off += (size_t)w;
  }
  h->len = h->off = 0;
  return 1;
}

/* Read once from h->from and forward; 0 when either side closed. */
static int pump(struct half *h) {
  if (h->len != 0) return 1;
  ssize_t r = read(h->from, h->buf, BUF);
  if (r < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
  if (r <= 0) return 0;
  h->len = (size_t)r;
  h->off = 0;
  return flush_half(h);
}

static int connect_kernel(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) die("socket");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) die(path);
  return fd;
}

/* A client connected to l: connect to the kernel's socket and register both directions. */
static void on_accept(struct listener *l) {
  int c = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (c < 0) return;
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int k = connect_kernel(l->path);
  struct half *up = calloc(1, sizeof(*up)), *down = calloc(1, sizeof(*down));
  if (up == NULL || down == NULL || (up->buf = malloc(BUF)) == NULL || (down->buf = malloc(BUF)) == NULL) die("malloc");
  *up = (struct half){.from = c, .to = k, .buf = up->buf, .peer = down, .mask = EPOLLIN};
  *down = (struct half){.from = k, .to = c, .buf = down->buf, .peer = up, .mask = EPOLLIN};
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = up};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &e) < 0) die("epoll_ctl");
  e.data.ptr = down;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, k, &e) < 0) die("epoll_ctl");
}

int main(int argc, char **argv) {
  if (argc < 3 || argc - 2 > MAX_PORTS) {
    fprintf(stderr, "usage: bench_relay IPC_PREFIX PORT...\n");
    return 2;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  static struct listener ls[MAX_PORTS];
  int n = argc - 2;
  /* listeners are told apart from halves by address: they live in ls[] */
  for (int i = 0; i < n; i++) {
    snprintf(ls[i].path, sizeof(ls[i].path), "%s-%s", argv[1], argv[i + 2]);
    ls[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (ls[i].fd < 0 || bind(ls[i].fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls[i].fd, 16) < 0 ||
        getsockname(ls[i].fd, (struct sockaddr *)&a, &al) < 0)
      die("listen");
    printf("%s=%d%s", argv[i + 2], ntohs(a.sin_port), i + 1 < n ? " " : "\n");
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &ls[i]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls[i].fd, &e) < 0) die("epoll_ctl");
  }
  fflush(stdout);
  struct epoll_event e0 = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e0) < 0) die("epoll_ctl stdin");
  for (;;) {
    struct epoll_event ev[32];
    int got = epoll_wait(ep, ev, 32, -1);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) die("epoll_wait");
    for (int i = 0; i < got; i++) {
      void *p = ev[i].data.ptr;
      if (p == NULL) return 0; /* stdin readable: closed by the benchmark */
      if ((struct listener *)p >= ls && (struct listener *)p < ls + n) {
        on_accept(p);
        continue;
      }
      struct half *h = p; /* h->from is the fd that fired; it is also h->peer->to */
      int alive = 1;
      if (ev[i].events & EPOLLOUT) alive = flush_half(h->peer);
      if (alive && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) alive = pump(h);
      if (!alive) {
        epoll_ctl(ep, EPOLL_CTL_DEL, h->from, NULL);
        epoll_ctl(ep, EPOLL_CTL_DEL, h->to, NULL);
        close_pair(h);
        /* later events of this batch may name the freed pair: stop the batch */
        break;
      }
      rearm(h);
      rearm(h->peer);
    }
  }
}
