#include "kernel/peers.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "util/alloc.h"
#include "util/log.h"

#define FD_RESERVE 256 /* descriptors kept free for everything else kbox opens */
#define MIN_PER_PORT 16
#define LOG_FIRST_CUTS 5 /* then one line every LOG_EVERY_CUTS */
#define LOG_EVERY_CUTS 1000

/* The cap per port: KBOX_PEERS_MAX, or what the open-file limit leaves for five ports. */
static size_t cap_per_port(void) {
  struct rlimit r;
  size_t max = KBOX_PEERS_MAX;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
    size_t room = r.rlim_cur > FD_RESERVE ? (size_t)(r.rlim_cur - FD_RESERVE) / KBOX_CH_N : 0;
    if (room < max) max = room < MIN_PER_PORT ? MIN_PER_PORT : room;
  }
  return max;
}

/* Start the monitor of one host socket and connect our end to it. */
static int monitor(struct kbox_peers *p, void *ctx, void *sock, enum kbox_channel ch, kbox_error_t *err) {
  struct kbox_peer_port *pp = &p->ch[ch];
  char ep[64];
  snprintf(ep, sizeof(ep), "inproc://kbox-peers-%s-%p", kbox_channel_names[ch], (void *)p);
  if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) < 0)
    return kbox_error_make(err, errno, "zmq_socket_monitor on the %s socket", kbox_channel_names[ch]);
  pp->sock = sock;
  pp->mon = zmq_socket(ctx, ZMQ_PAIR);
  if (pp->mon == NULL) return kbox_error_make(err, errno, "zmq_socket");
  /* libzmq's I/O thread sends the events blocking: an unbounded queue on our side never stalls it
     (we read the events in every loop round; each is a few dozen bytes) */
  int zero = 0;
  zmq_setsockopt(pp->mon, ZMQ_RCVHWM, &zero, sizeof(zero));
  zmq_setsockopt(pp->mon, ZMQ_LINGER, &zero, sizeof(zero));
  if (zmq_connect(pp->mon, ep) < 0) return kbox_error_make(err, errno, "connecting to the %s socket's monitor", kbox_channel_names[ch]);
  int fd;
  size_t n = sizeof(fd);
  if (zmq_getsockopt(pp->mon, ZMQ_FD, &fd, &n) < 0) return kbox_error_make(err, errno, "ZMQ_FD of a monitor");
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)ch};
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return kbox_error_make(err, errno, "epoll_ctl");
  return 0;
}

int kbox_peers_open(struct kbox_peers *p, void *ctx, void *const host[KBOX_CH_N], const struct kbox_conn *conn,
                    kbox_error_t *err) {
  memset(p, 0, sizeof(*p));
  p->max = cap_per_port();
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) return kbox_error_make(err, errno, "epoll_create1");
  p->on = true;
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    struct kbox_peer_port *pp = &p->ch[ch];
    pp->port = conn->port[ch];
    pp->ipc = strcmp(conn->transport, "ipc") == 0;
    if (pp->ipc) snprintf(pp->path, sizeof(pp->path), "%.90s-%u", conn->ip, conn->port[ch]);
    if (monitor(p, ctx, host[ch], (enum kbox_channel)ch, err) < 0) return -1;
  }
  /* ZMQ_FD only signals once a reader found its queue empty: read it empty now */
  kbox_peers_service(p);
  return 0;
}

int kbox_peers_fd(const struct kbox_peers *p) { return p->on ? p->epfd : -1; }

/* Is fd (still) a connection accepted by this port's listener? (libzmq may have closed it and the
   number been reused since the event was sent: then it must not be touched.) */
static bool ours(const struct kbox_peer_port *pp, int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int listening = 0;
  socklen_t ln = sizeof(listening);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return false;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ln) < 0 || listening) return false;
  if (pp->ipc)
    return ss.ss_family == AF_UNIX && strncmp(((struct sockaddr_un *)&ss)->sun_path, pp->path, sizeof(pp->path)) == 0;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port) == pp->port;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == pp->port;
  return false;
}

static struct kbox_peer *find(struct kbox_peer_port *pp, int fd) {
  for (size_t i = 0; i < pp->n; i++)
    if (pp->v[i].fd == fd) return &pp->v[i];
  return NULL;
}

/* Forget entry e (keeping the others in accept order). */
static void forget(struct kbox_peer_port *pp, struct kbox_peer *e) {
  if (!e->cut) pp->open--;
  memmove(e, e + 1, (size_t)(&pp->v[pp->n] - (e + 1)) * sizeof(*e));
  pp->n--;
}

/* The connection to drop to make room: the oldest that never spoke (entries are in accept order;
   a connection just accepted has not spoken, so when every other one has, it is the one). */
static struct kbox_peer *victim(struct kbox_peer_port *pp) {
  for (size_t i = 0; i < pp->n; i++)
    if (!pp->v[i].cut && !pp->v[i].spoke) return &pp->v[i];
  return NULL;
}

/* Cut connections until the port is at its cap again. */
static void make_room(struct kbox_peers *p, enum kbox_channel ch) {
  struct kbox_peer_port *pp = &p->ch[ch];
  while (pp->open > p->max) {
    struct kbox_peer *e = victim(pp);
    if (e == NULL) return;
    e->cut = true;
    pp->open--;
    if (!ours(pp, e->fd)) continue; /* already gone: its disconnect event is on the way */
    shutdown(e->fd, SHUT_RDWR);      /* libzmq sees the end of the stream and closes it itself */
    p->cut++;
    if (p->cut <= LOG_FIRST_CUTS || p->cut % LOG_EVERY_CUTS == 0)
      kbox_log(KBOX_LOG_WARN, "%s port %u: %zu connections open (the cap per port): closed %s (%llu closed so far)",
               kbox_channel_names[ch], pp->port, p->max,
               e == &pp->v[pp->n - 1] ? "the new connection (every other one has sent a valid message)"
                                      : "the oldest connection that never sent a valid message", p->cut);
  }
}

static void accepted(struct kbox_peers *p, enum kbox_channel ch, int fd) {
  struct kbox_peer_port *pp = &p->ch[ch];
  struct kbox_peer *old = find(pp, fd);
  if (old != NULL) forget(pp, old); /* a disconnect we did not see (the event queue is unbounded: should not happen) */
  if (pp->n == pp->cap) {
    pp->cap = pp->cap ? pp->cap * 2 : 64;
    pp->v = xrealloc(pp->v, pp->cap * sizeof(pp->v[0]));
  }
  pp->v[pp->n++] = (struct kbox_peer){.fd = fd};
  pp->open++;
  make_room(p, ch);
}

static void disconnected(struct kbox_peer_port *pp, int fd) {
  struct kbox_peer *e = find(pp, fd);
  if (e != NULL) forget(pp, e);
}

/* Read every event waiting on one monitor: frame 1 is u16 event + u32 value (the fd), frame 2
   the endpoint. */
static void drain(struct kbox_peers *p, enum kbox_channel ch) {
  struct kbox_peer_port *pp = &p->ch[ch];
  for (;;) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, pp->mon, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&m);
      return;
    }
    uint16_t event = 0;
    uint32_t value = 0;
    if (zmq_msg_size(&m) >= 6) {
      memcpy(&event, zmq_msg_data(&m), 2);
      memcpy(&value, (char *)zmq_msg_data(&m) + 2, 4);
    }
    while (zmq_msg_more(&m)) { /* the endpoint frame */
      zmq_msg_close(&m);
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, pp->mon, ZMQ_DONTWAIT) < 0) break;
    }
    zmq_msg_close(&m);
    if (event == ZMQ_EVENT_ACCEPTED) accepted(p, ch, (int)value);
    else if (event == ZMQ_EVENT_DISCONNECTED) disconnected(pp, (int)value);
  }
}

void kbox_peers_service(struct kbox_peers *p) {
  if (!p->on) return;
  /* every monitor is read to the end, which also clears its ZMQ_FD (and so the epoll fd) */
  for (int ch = 0; ch < KBOX_CH_N; ch++)
    if (p->ch[ch].mon != NULL) drain(p, (enum kbox_channel)ch);
}

void kbox_peers_spoke(struct kbox_peers *p, enum kbox_channel ch, int fd) {
  if (!p->on || fd < 0) return;
  struct kbox_peer_port *pp = &p->ch[ch];
  for (size_t i = pp->n; i-- > 0;)
    if (pp->v[i].fd == fd) {
      pp->v[i].spoke = true;
      return;
    }
}

void kbox_peers_close(struct kbox_peers *p) {
  if (!p->on) return;
  for (int ch = 0; ch < KBOX_CH_N; ch++) {
    struct kbox_peer_port *pp = &p->ch[ch];
    /* the monitor first: its events are sent blocking, and there would be no one to take them */
    if (pp->sock != NULL) zmq_socket_monitor(pp->sock, NULL, 0);
    if (pp->mon != NULL) zmq_close(pp->mon);
    free(pp->v);
  }
  close(p->epfd);
  unsigned long long cut = p->cut; /* for the report, written after the broker closed */
  memset(p, 0, sizeof(*p));
  p->cut = cut;
}
