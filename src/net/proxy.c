#include "net/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "net/http.h"
#include "util/alloc.h"
#include "util/log.h"
#include "util/clock.h"

#define HEAD_MAX 8192        /* request line + headers */
#define BUF 16384            /* per direction */
#define HEAD_MS 10000        /* the request head must arrive by then */
#define RESOLVE_MS 10000
#define CONNECT_MS 10000
#define FLUSH_MS 5000        /* a refusal is written out, then the connection closes */
#define MAX_ADDRS 8
#define MAX_HOSTS 256        /* per-host counters kept; others are counted under "(other)" */
#define TEST_MAP_MAX 32
#define REFUSING_MAX 256     /* connections over the limit still answered 503 (then closed) */

enum state { S_HEAD, S_RESOLVING, S_CONNECTING, S_PIPE, S_CLOSING };

struct conn {
  int cfd, ufd;
  enum state st;
  long long started, last, deadline;
  char head[HEAD_MAX];
  size_t head_len;
  char c2u[BUF], u2c[BUF];
  size_t c2u_len, c2u_off, u2c_len, u2c_off;
  bool c_eof, u_eof, c_shut, u_shut;
  bool tunnel;                 /* CONNECT */
  bool resp_marked;            /* plain HTTP: "Connection: close" is in the response head */
  char host[KBOX_NET_HOST_MAX + 1];
  unsigned port;
  size_t body_at;              /* first byte after the head */
  char *fwd_head;              /* plain HTTP: the head rewritten for the origin server */
  size_t fwd_len;
  struct sockaddr_storage addrs[MAX_ADDRS];
  socklen_t addr_len[MAX_ADDRS];
  size_t n_addrs, next_addr;
  struct gaicb *gai;           /* in flight (owned with its request strings) */
  int pidx_c, pidx_u;          /* poll slots */
};

struct host_count {
  char host[KBOX_NET_HOST_MAX + 1];
  unsigned long allowed, blocked;
};

struct test_map {
  char name[KBOX_NET_HOST_MAX + 1];
  struct sockaddr_storage addr;
  socklen_t len;
};

struct kbox_proxy {
  struct kbox_proxy_config cfg;
  int lfd, wake;
  pthread_t thread;
  bool running;
  atomic_bool stop;
  struct conn **conns;
  size_t n_conns;
  struct gaicb **orphans;      /* resolutions still running for closed connections */
  size_t n_orphans;
  struct test_map test[TEST_MAP_MAX];
  size_t n_test;
  /* counters (read after the thread stopped) */
  unsigned long allowed, blocked, busy_refused, timeouts;
  uint64_t bytes;
  bool bytes_exhausted;
  struct host_count *hosts;
  size_t n_hosts;
  unsigned long other_allowed, other_blocked;
  unsigned long notify_dropped;
};

/* Count one decision for host. */
static void count(struct kbox_proxy *p, const char *host, bool allowed) {
  allowed ? p->allowed++ : p->blocked++;
  for (size_t i = 0; i < p->n_hosts; i++)
    if (strcmp(p->hosts[i].host, host) == 0) {
      allowed ? p->hosts[i].allowed++ : p->hosts[i].blocked++;
      return;
    }
  if (p->n_hosts == MAX_HOSTS) {
    allowed ? p->other_allowed++ : p->other_blocked++;
    return;
  }
  p->hosts = xrealloc(p->hosts, (p->n_hosts + 1) * sizeof(*p->hosts));
  struct host_count *h = &p->hosts[p->n_hosts++];
  snprintf(h->host, sizeof(h->host), "%s", host);
  h->allowed = allowed;
  h->blocked = !allowed;
}

static void event(struct kbox_proxy *p, const char *name, json_t *fields) {
  if (p->cfg.on_event != NULL) p->cfg.on_event(p->cfg.event_ctx, name, fields);
  json_decref(fields);
}

/* One line for the author of the code (the current cell's stderr, or kbox's stderr). */
static void notify(struct kbox_proxy *p, const char *line) {
  char buf[1024];
  int n = snprintf(buf, sizeof(buf), "%s\n", line);
  if (n >= (int)sizeof(buf)) {
    n = (int)sizeof(buf) - 1;
    buf[n - 1] = '\n';
  }
  if (p->cfg.notify_fd < 0 || write(p->cfg.notify_fd, buf, (size_t)n) != n) p->notify_dropped++;
}

/* ---- test resolver ---- */

static void load_test_map(struct kbox_proxy *p) {
  const char *env = getenv(KBOX_TEST_RESOLVE_ENV);
  if (env == NULL || *env == '\0') return;
  kbox_warn("%s is set: names are mapped by the test-only resolver, not resolved (tests only)", KBOX_TEST_RESOLVE_ENV);
  char *copy = xstrdup(env);
  for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok != NULL && p->n_test < TEST_MAP_MAX;
       tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (eq == NULL) continue;
    *eq = '\0';
    struct test_map *m = &p->test[p->n_test];
    if (!kbox_net_host_normalise(tok, strlen(tok), m->name, sizeof(m->name))) continue;
    memset(&m->addr, 0, sizeof(m->addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&m->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&m->addr;
    if (inet_pton(AF_INET, eq + 1, &a4->sin_addr) == 1) {
      a4->sin_family = AF_INET;
      m->len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, eq + 1, &a6->sin6_addr) == 1) {
      a6->sin6_family = AF_INET6;
      m->len = sizeof(*a6);
    } else {
      continue;
    }
    p->n_test++;
  }
  free(copy);
}

static const struct test_map *test_lookup(const struct kbox_proxy *p, const char *host) {
  for (size_t i = 0; i < p->n_test; i++)
    if (strcmp(p->test[i].name, host) == 0) return &p->test[i];
  return NULL;
}

/* ---- connections ---- */

static void free_gai(struct gaicb *g) {
  if (g == NULL) return;
  if (g->ar_result) freeaddrinfo(g->ar_result);
  free((char *)g->ar_name);
  free((char *)g->ar_service);
  free((void *)g->ar_request);
  free(g);
}

/* Close a connection; a resolution still running is kept until it ends. */
static void conn_free(struct kbox_proxy *p, struct conn *c) {
  if (c->cfd >= 0) close(c->cfd);
  if (c->ufd >= 0) close(c->ufd);
  if (c->gai != NULL) {
    if (gai_cancel(c->gai) == EAI_CANCELED || gai_error(c->gai) != EAI_INPROGRESS) {
      free_gai(c->gai);
    } else {
      p->orphans = xrealloc(p->orphans, (p->n_orphans + 1) * sizeof(*p->orphans));
      p->orphans[p->n_orphans++] = c->gai;
    }
  }
  free(c->fwd_head);
  free(c);
}

/* Queue a whole response to the client and close once it is written. */
static void respond(struct conn *c, const char *status, const char *body, long long now) {
  int n = snprintf(c->u2c, sizeof(c->u2c),
                   "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\nX-Kbox-Proxy: refused\r\n\r\n%s",
                   status, strlen(body), body);
  c->u2c_len = n >= (int)sizeof(c->u2c) ? sizeof(c->u2c) - 1 : (size_t)n;
  c->u2c_off = 0;
  c->st = S_CLOSING;
  c->deadline = now + FLUSH_MS;
  if (c->ufd >= 0) close(c->ufd);
  c->ufd = -1;
}

static void url_of(const struct conn *c, char *out, size_t n) {
  bool v6 = strchr(c->host, ':') != NULL;
  snprintf(out, n, "%s://%s%s%s:%u", c->tunnel ? "https" : "http", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
}

/* Refuse: 403 to the client with the reason and the missing rule, one line for the author, counters, audit. */
static void refuse(struct kbox_proxy *p, struct conn *c, const char *why, const char *missing, long long now) {
  char url[400], allowed[600], line[1800], body[3000];
  url_of(c, url, sizeof(url));
  kbox_net_rules_describe(p->cfg.rules, allowed, sizeof(allowed));
  snprintf(line, sizeof(line), "kbox: blocked %s \xe2\x80\x94 %s (allowed: %s)", url, why, allowed);
  if (missing != NULL)
    snprintf(body, sizeof(body), "%s\nmissing rule: %s (start the kernel with --net allow=...,%s to permit it)\n",
             line, missing, missing);
  else
    snprintf(body, sizeof(body), "%s\nno rule can permit this\n", line);
  notify(p, line);
  count(p, c->host, false);
  event(p, "net_blocked", json_pack("{s:s, s:s, s:i, s:s, s:s?}", "url", url, "host", c->host, "port", (int)c->port,
                                    "reason", why, "missing_rule", missing));
  respond(c, "403 Forbidden", body, now);
}

static void start_resolve(struct kbox_proxy *p, struct conn *c, long long now);

/* The head is complete: parse it, check the rules, go on to resolving. */
static void on_head(struct kbox_proxy *p, struct conn *c, size_t head_end, long long now) {
  c->body_at = head_end;
  struct kbox_http_req req;
  const char *bad = kbox_http_parse_proxy_head(c->head, head_end, &req);
  snprintf(c->host, sizeof(c->host), "%s", req.host);
  c->port = req.port;
  c->tunnel = req.tunnel;
  c->fwd_head = req.fwd_head; /* owned by c now */
  c->fwd_len = req.fwd_len;
  if (bad != NULL) {
    char body[256];
    snprintf(body, sizeof(body), "%s\n", bad);
    return respond(c, "400 Bad Request", body, now);
  }
  if (p->bytes_exhausted) {
    char why[128];
    snprintf(why, sizeof(why), "the kernel used up --net-max-bytes (%llu bytes)", (unsigned long long)p->cfg.max_bytes);
    return refuse(p, c, why, NULL, now);
  }
  bool host_known = false;
  if (!kbox_net_rules_allow(p->cfg.rules, c->host, c->port, &host_known)) {
    char missing[300], why[600];
    bool v6 = strchr(c->host, ':') != NULL;
    if (c->port == 443 || c->port == 80)
      snprintf(missing, sizeof(missing), "%s%s%s", v6 ? "[" : "", c->host, v6 ? "]" : "");
    else
      snprintf(missing, sizeof(missing), "%s%s%s:%u", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
    if (host_known) {
      char ports[128];
      kbox_net_rules_ports_of(p->cfg.rules, c->host, ports, sizeof(ports));
      snprintf(why, sizeof(why), "port %u is not in --net allow for %s (its ports: %s)", c->port, c->host, ports);
    } else {
      snprintf(why, sizeof(why), "not in --net allow");
    }
    return refuse(p, c, why, missing, now);
  }
  start_resolve(p, c, now);
}

/* getaddrinfo_a's completion runs in a thread of its own: wake the proxy loop. */
static void resolved_cb(union sigval v) {
  uint64_t one = 1;
  if (write(v.sival_int, &one, sizeof(one)) < 0) { /* the loop also polls pending resolutions */ }
}

static void add_addr(struct conn *c, const struct sockaddr *sa, socklen_t len, unsigned port) {
  if (c->n_addrs == MAX_ADDRS || len > sizeof(c->addrs[0])) return;
  memcpy(&c->addrs[c->n_addrs], sa, len);
  if (sa->sa_family == AF_INET) ((struct sockaddr_in *)&c->addrs[c->n_addrs])->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)&c->addrs[c->n_addrs])->sin6_port = htons((uint16_t)port);
  c->addr_len[c->n_addrs++] = len;
}

static void begin_connect(struct kbox_proxy *p, struct conn *c, long long now);

/* Keep the addresses kbox may connect to; refuse when none is left. test: from the test map. */
static void screen(struct kbox_proxy *p, struct conn *c, bool test, long long now) {
  size_t kept = 0;
  char why[800] = "";
  for (size_t i = 0; i < c->n_addrs; i++) {
    const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[i];
    enum kbox_addr_class cl = kbox_net_addr_class(sa);
    bool ok = cl == KBOX_ADDR_PUBLIC || (test && cl == KBOX_ADDR_LOOPBACK) ||
              (cl == KBOX_ADDR_PRIVATE && kbox_net_rules_name_addr(p->cfg.rules, sa));
    if (ok) {
      if (kept != i) {
        c->addrs[kept] = c->addrs[i];
        c->addr_len[kept] = c->addr_len[i];
      }
      kept++;
    } else if (why[0] == '\0') {
      char a[64];
      kbox_net_addr_text(sa, a, sizeof(a));
      snprintf(why, sizeof(why), "%s resolves to %s, a %s address%s%s", c->host, a, kbox_net_addr_class_name(cl),
               cl == KBOX_ADDR_LINK_LOCAL ? " (where cloud metadata services live)" : "",
               cl == KBOX_ADDR_PRIVATE ? " (allowed only when a rule names that address)" : ", which kbox never connects to");
    }
  }
  c->n_addrs = kept;
  if (kept == 0) return refuse(p, c, why[0] ? why : "the name has no address", NULL, now);
  begin_connect(p, c, now);
}

static void start_resolve(struct kbox_proxy *p, struct conn *c, long long now) {
  c->n_addrs = c->next_addr = 0;
  const struct test_map *m = test_lookup(p, c->host);
  if (m != NULL) {
    add_addr(c, (const struct sockaddr *)&m->addr, m->len, c->port);
    return screen(p, c, true, now);
  }
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
  struct sockaddr_in a4 = {.sin_family = AF_INET};
  if (inet_pton(AF_INET, c->host, &a4.sin_addr) == 1) {
    add_addr(c, (struct sockaddr *)&a4, sizeof(a4), c->port);
    return screen(p, c, false, now);
  }
  if (inet_pton(AF_INET6, c->host, &a6.sin6_addr) == 1) {
    add_addr(c, (struct sockaddr *)&a6, sizeof(a6), c->port);
    return screen(p, c, false, now);
  }
  struct gaicb *g = xcalloc(1, sizeof(*g));
  struct addrinfo *hints = xcalloc(1, sizeof(*hints));
  hints->ai_socktype = SOCK_STREAM;
  hints->ai_flags = AI_ADDRCONFIG;
  g->ar_name = xstrdup(c->host);
  g->ar_request = hints;
  struct sigevent sev = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = resolved_cb};
  sev.sigev_value.sival_int = p->wake;
  struct gaicb *list[1] = {g};
  if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
    free_gai(g);
    return respond(c, "502 Bad Gateway", "kbox: cannot start resolving the name\n", now);
  }
  c->gai = g;
  c->st = S_RESOLVING;
  c->deadline = now + RESOLVE_MS;
}

/* A resolution ended (or not yet: nothing happens). */
static void check_resolved(struct kbox_proxy *p, struct conn *c, long long now) {
  int rc = gai_error(c->gai);
  if (rc == EAI_INPROGRESS) return;
  if (rc == 0)
    for (struct addrinfo *ai = c->gai->ar_result; ai != NULL; ai = ai->ai_next)
      if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) add_addr(c, ai->ai_addr, ai->ai_addrlen, c->port);
  free_gai(c->gai);
  c->gai = NULL;
  if (rc != 0) {
    char body[512];
    snprintf(body, sizeof(body), "kbox: cannot resolve %s: %s\n", c->host, gai_strerror(rc));
    return respond(c, "502 Bad Gateway", body, now);
  }
  screen(p, c, false, now);
}

static void begin_connect(struct kbox_proxy *p, struct conn *c, long long now) {
  while (c->next_addr < c->n_addrs) {
    const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[c->next_addr];
    socklen_t len = c->addr_len[c->next_addr++];
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, sa, len) == 0 || errno == EINPROGRESS) {
      c->ufd = fd;
      c->st = S_CONNECTING;
      c->deadline = now + CONNECT_MS;
      return;
    }
    close(fd);
  }
  char body[512], url[400];
  url_of(c, url, sizeof(url));
  snprintf(body, sizeof(body), "kbox: %s is allowed but kbox could not connect to it\n", url);
  respond(c, "502 Bad Gateway", body, now);
}

/* Connected upstream: answer CONNECT, or send the rewritten head, then pipe. */
static void on_connected(struct kbox_proxy *p, struct conn *c, long long now) {
  char url[400], a[64];
  url_of(c, url, sizeof(url));
  kbox_net_addr_text((const struct sockaddr *)&c->addrs[c->next_addr - 1], a, sizeof(a));
  count(p, c->host, true);
  event(p, "net_allowed", json_pack("{s:s, s:s, s:i, s:s}", "url", url, "host", c->host, "port", (int)c->port, "address", a));
  size_t rest = c->head_len - c->body_at;
  if (c->tunnel) {
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    memcpy(c->u2c, ok, sizeof(ok) - 1);
    c->u2c_len = sizeof(ok) - 1;
    memcpy(c->c2u, c->head + c->body_at, rest);
    c->c2u_len = rest;
  } else {
    memcpy(c->c2u, c->fwd_head, c->fwd_len); /* fwd_len <= head_len + 64 < BUF - HEAD_MAX */
    memcpy(c->c2u + c->fwd_len, c->head + c->body_at, rest);
    c->c2u_len = c->fwd_len + rest;
  }
  c->c2u_off = c->u2c_off = 0;
  c->st = S_PIPE;
  c->last = now;
}

/* Bytes moved: count them against --net-max-bytes. */
static void account(struct kbox_proxy *p, size_t n) {
  p->bytes += n;
  if (p->cfg.max_bytes == 0 || p->bytes_exhausted || p->bytes <= p->cfg.max_bytes) return;
  p->bytes_exhausted = true;
  char line[256];
  snprintf(line, sizeof(line), "kbox: network cut off \xe2\x80\x94 the kernel moved more than --net-max-bytes (%llu bytes)",
           (unsigned long long)p->cfg.max_bytes);
  notify(p, line);
  event(p, "limit", json_pack("{s:s, s:I}", "limit", "net_max_bytes", "max_bytes", (json_int_t)p->cfg.max_bytes));
}

/* Read what fd has into buf (up to cap); returns bytes read, 0 on EOF (sets *eof), -1 when nothing. */
static ssize_t fill(int fd, char *buf, size_t *len, size_t cap, bool *eof) {
  if (*len >= cap) return -1;
  ssize_t r = read(fd, buf + *len, cap - *len);
  if (r == 0) *eof = true;
  if (r > 0) *len += (size_t)r;
  if (r < 0 && errno != EAGAIN && errno != EINTR) *eof = true;
  return r;
}

/* Write pending bytes; false when the peer is gone. */
static bool flush(int fd, char *buf, size_t *off, size_t *len) {
  while (*off < *len) {
    ssize_t w = send(fd, buf + *off, *len - *off, MSG_NOSIGNAL);
    if (w < 0) return errno == EAGAIN || errno == EINTR;
    *off += (size_t)w;
  }
  *off = *len = 0;
  return true;
}

/* Plain HTTP is one request per connection (the origin gets "Connection: close"): tell the client
   too, right after the response's status line, so it never sends a second request on a connection
   the proxy is closing (a pooled keep-alive connection would fail with "connection reset"). Until
   the status line is complete the response is held. */
static bool mark_response(struct conn *c) {
  static const char hdr[] = "Connection: close\r\nProxy-Connection: close\r\n";
  if (c->tunnel || c->resp_marked) return true;
  char *eol = memmem(c->u2c, c->u2c_len, "\r\n", 2);
  if (eol == NULL) {
    if (c->u2c_len < sizeof(c->u2c) && !c->u_eof) return false; /* wait for the rest of the line */
    c->resp_marked = true; /* no status line at all: pass it on as it is */
    return true;
  }
  size_t at = (size_t)(eol - c->u2c) + 2, n = sizeof(hdr) - 1;
  if (c->u2c_len + n <= sizeof(c->u2c)) {
    memmove(c->u2c + at + n, c->u2c + at, c->u2c_len - at);
    memcpy(c->u2c + at, hdr, n);
    c->u2c_len += n;
  }
  c->resp_marked = true;
  return true;
}

/* One direction-pair step of an established connection; false when it is finished. */
static bool pipe_step(struct kbox_proxy *p, struct conn *c, short cev, short uev, long long now) {
  if ((cev & (POLLIN | POLLHUP | POLLERR)) && !c->c_eof) {
    ssize_t r = fill(c->cfd, c->c2u, &c->c2u_len, sizeof(c->c2u), &c->c_eof);
    if (r > 0) account(p, (size_t)r), c->last = now;
  }
  if ((uev & (POLLIN | POLLHUP | POLLERR)) && !c->u_eof) {
    ssize_t r = fill(c->ufd, c->u2c, &c->u2c_len, sizeof(c->u2c), &c->u_eof);
    if (r > 0) account(p, (size_t)r), c->last = now;
  }
  if (p->bytes_exhausted) return false;
  if (!flush(c->ufd, c->c2u, &c->c2u_off, &c->c2u_len)) return false;
  if (mark_response(c) && !flush(c->cfd, c->u2c, &c->u2c_off, &c->u2c_len)) return false;
  if (c->c_eof && c->c2u_len == 0 && !c->u_shut) c->u_shut = shutdown(c->ufd, SHUT_WR) == 0 || true;
  if (c->u_eof && c->u2c_len == 0 && !c->c_shut) c->c_shut = shutdown(c->cfd, SHUT_WR) == 0 || true;
  return !(c->c_eof && c->u_eof && c->c2u_len == 0 && c->u2c_len == 0);
}

/* Handle poll results for one connection; false: close it. */
static bool conn_step(struct kbox_proxy *p, struct conn *c, short cev, short uev, long long now) {
  switch (c->st) {
  case S_HEAD: {
    if (!(cev & (POLLIN | POLLHUP | POLLERR))) return true;
    bool eof = false;
    ssize_t r = fill(c->cfd, c->head, &c->head_len, sizeof(c->head), &eof);
    if (eof) return false;
    if (r <= 0) return true;
    char *end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
    if (end != NULL) on_head(p, c, (size_t)(end + 4 - c->head), now);
    else if (c->head_len == sizeof(c->head)) respond(c, "431 Request Header Fields Too Large", "kbox: request head over 8 KiB\n", now);
    return true;
  }
  case S_RESOLVING: return true; /* woken through the eventfd */
  case S_CONNECTING: {
    if (!(uev & (POLLOUT | POLLERR | POLLHUP))) return true;
    int e = 0;
    socklen_t el = sizeof(e);
    getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e != 0) {
      close(c->ufd);
      c->ufd = -1;
      begin_connect(p, c, now);
      return true;
    }
    on_connected(p, c, now);
    return pipe_step(p, c, 0, 0, now);
  }
  case S_PIPE: return pipe_step(p, c, cev, uev, now);
  case S_CLOSING: {
    /* Lingering close: write the response, end our side, then read (and drop) what the client still
       sends until it closes. Closing a unix socket with unread input resets it, and the peer
       could lose the response. */
    if (cev & POLLERR) return false;
    if (mark_response(c) && !flush(c->cfd, c->u2c, &c->u2c_off, &c->u2c_len)) return false;
    if (c->u2c_len != 0) return true;
    if (!c->c_shut) c->c_shut = shutdown(c->cfd, SHUT_WR) == 0 || true;
    char sink[4096];
    ssize_t r;
    while ((r = read(c->cfd, sink, sizeof(sink))) > 0) {}
    return r < 0 && (errno == EAGAIN || errno == EINTR);
  }
  }
  return false;
}

/* Deadlines: returns false when c timed out (and should close). */
static bool conn_timer(struct kbox_proxy *p, struct conn *c, long long now, long long *next) {
  long long at = c->deadline;
  if (c->st == S_PIPE) {
    at = c->last + p->cfg.idle_ms;
    if (c->started + p->cfg.total_ms < at) at = c->started + p->cfg.total_ms;
  }
  if (now >= at) {
    if (c->st == S_PIPE) p->timeouts++;
    if (c->st == S_RESOLVING || c->st == S_CONNECTING || c->st == S_HEAD) {
      if (c->st == S_HEAD) return false;
      p->timeouts++;
      respond(c, "504 Gateway Timeout", "kbox: the server did not answer in time\n", now);
      return true;
    }
    return false;
  }
  if (at < *next) *next = at;
  return true;
}

/* Accept what is waiting; over --max connections, answer 503 and close. */
static void accept_all(struct kbox_proxy *p, long long now) {
  for (int i = 0; i < 64; i++) {
    int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    bool busy = p->n_conns >= p->cfg.max_conns;
    if (busy && p->n_conns >= p->cfg.max_conns + REFUSING_MAX) {
      close(fd); /* far over the limit: not even an answer */
      p->busy_refused++;
      continue;
    }
    if (busy && p->busy_refused++ == 0) {
      char line[160];
      snprintf(line, sizeof(line), "kbox: refused a connection \xe2\x80\x94 %u are open through the proxy already (the limit)",
               p->cfg.max_conns);
      notify(p, line);
    }
    struct conn *c = xcalloc(1, sizeof(*c));
    c->cfd = fd;
    c->ufd = -1;
    c->st = S_HEAD;
    c->started = c->last = now;
    c->deadline = now + HEAD_MS;
    if (busy) respond(c, "503 Service Unavailable", "kbox: too many connections open at once through the proxy\n", now);
    p->conns = xrealloc(p->conns, (p->n_conns + 1) * sizeof(*p->conns));
    p->conns[p->n_conns++] = c;
  }
}

/* Resolutions of closed connections that finished: free them. */
static void reap_orphans(struct kbox_proxy *p) {
  size_t k = 0;
  for (size_t i = 0; i < p->n_orphans; i++) {
    if (gai_error(p->orphans[i]) == EAI_INPROGRESS) p->orphans[k++] = p->orphans[i];
    else free_gai(p->orphans[i]);
  }
  p->n_orphans = k;
}

static short cevents(const struct conn *c) {
  switch (c->st) {
  case S_HEAD: return POLLIN;
  case S_PIPE: return (short)((c->c_eof || c->c2u_len == sizeof(c->c2u) ? 0 : POLLIN) | (c->u2c_len ? POLLOUT : 0));
  case S_CLOSING: return c->u2c_len ? POLLOUT : POLLIN;
  default: return 0;
  }
}

static short uevents(const struct conn *c) {
  if (c->st == S_CONNECTING) return POLLOUT;
  if (c->st != S_PIPE) return 0;
  return (short)((c->u_eof || c->u2c_len == sizeof(c->u2c) ? 0 : POLLIN) | (c->c2u_len ? POLLOUT : 0));
}

static void *loop(void *arg) {
  struct kbox_proxy *p = arg;
  struct pollfd *pfd = NULL;
  size_t cap = 0;
  while (!atomic_load(&p->stop)) {
    size_t need = 2 + 2 * p->n_conns;
    if (need > cap) {
      cap = need * 2;
      pfd = xrealloc(pfd, cap * sizeof(*pfd));
    }
    size_t n = 0;
    pfd[n++] = (struct pollfd){.fd = p->wake, .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
    long long now = kbox_now_ms(), next = now + 1000;
    bool resolving = false;
    for (size_t i = 0; i < p->n_conns; i++) {
      struct conn *c = p->conns[i];
      c->pidx_c = (int)n;
      pfd[n++] = (struct pollfd){.fd = c->cfd, .events = cevents(c)};
      c->pidx_u = (int)n;
      pfd[n++] = (struct pollfd){.fd = c->ufd, .events = uevents(c)};
      resolving |= c->st == S_RESOLVING;
    }
    int timeout = (int)(next - now);
    if (resolving || p->n_orphans) timeout = timeout > 50 ? 50 : timeout; /* a lost wake-up costs 50 ms */
    if (poll(pfd, n, timeout) < 0 && errno != EINTR) break;
    now = kbox_now_ms();
    if (pfd[0].revents & POLLIN) {
      uint64_t v;
      if (read(p->wake, &v, sizeof(v)) < 0) { /* EAGAIN: another thread read it */ }
    }
    if (atomic_load(&p->stop)) break;
    size_t k = 0, before = p->n_conns;
    for (size_t i = 0; i < before; i++) {
      struct conn *c = p->conns[i];
      if (c->st == S_RESOLVING) check_resolved(p, c, now);
      bool keep = conn_step(p, c, pfd[c->pidx_c].revents, pfd[c->pidx_u].revents, now) && conn_timer(p, c, now, &next);
      if (keep) p->conns[k++] = c;
      else conn_free(p, c);
    }
    p->n_conns = k;
    if (pfd[1].revents & POLLIN) accept_all(p, now);
    if (p->n_orphans) reap_orphans(p);
  }
  free(pfd);
  return NULL;
}

int kbox_proxy_open(struct kbox_proxy **out, const struct kbox_proxy_config *cfg, kbox_error_t *err) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  if (strlen(cfg->sock_path) >= sizeof(sun.sun_path))
    return kbox_error_make(err, 0, "--net: socket path %s is too long", cfg->sock_path);
  struct kbox_proxy *p = xcalloc(1, sizeof(*p));
  p->cfg = *cfg;
  p->lfd = p->wake = -1;
  load_test_map(p);
  snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", cfg->sock_path);
  unlink(cfg->sock_path);
  p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  p->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (p->lfd < 0 || p->wake < 0 || bind(p->lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(p->lfd, 128) < 0) {
    kbox_error_make(err, errno, "--net: the proxy socket %s", cfg->sock_path);
    kbox_proxy_close(p);
    return -1;
  }
  if (cfg->sock_uid != (uid_t)-1 && chown(cfg->sock_path, cfg->sock_uid, cfg->sock_gid) < 0) {
    kbox_error_make(err, errno, "--net: chown %s", cfg->sock_path);
    kbox_proxy_close(p);
    return -1;
  }
  chmod(cfg->sock_path, 0600);
  *out = p;
  return 0;
}

int kbox_proxy_start(struct kbox_proxy *p, kbox_error_t *err) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread takes no signal: kbox's signalfd does */
  int rc = pthread_create(&p->thread, NULL, loop, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return kbox_error_make(err, rc, "--net: starting the proxy thread");
  p->running = true;
  return 0;
}

void kbox_proxy_stop(struct kbox_proxy *p) {
  if (p == NULL || !p->running) return;
  atomic_store(&p->stop, true);
  uint64_t one = 1;
  if (write(p->wake, &one, sizeof(one)) < 0) { /* the loop wakes within a second anyway */ }
  pthread_join(p->thread, NULL);
  p->running = false;
}

json_t *kbox_proxy_report(struct kbox_proxy *p) {
  char allowed[2048];
  kbox_net_rules_describe(p->cfg.rules, allowed, sizeof(allowed));
  json_t *hosts = json_object();
  for (size_t i = 0; i < p->n_hosts; i++)
    json_object_set_new(hosts, p->hosts[i].host, json_pack("{s:I, s:I}", "allowed", (json_int_t)p->hosts[i].allowed,
                                                          "blocked", (json_int_t)p->hosts[i].blocked));
  if (p->other_allowed || p->other_blocked)
    json_object_set_new(hosts, "(other)", json_pack("{s:I, s:I}", "allowed", (json_int_t)p->other_allowed, "blocked",
                                                   (json_int_t)p->other_blocked));
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:o}", "mode", "allow", "allow", allowed,
                   "connections_allowed", (json_int_t)p->allowed, "connections_blocked", (json_int_t)p->blocked,
                   "connections_refused_busy", (json_int_t)p->busy_refused, "connection_timeouts", (json_int_t)p->timeouts,
                   "bytes", (json_int_t)p->bytes, "max_bytes", (json_int_t)p->cfg.max_bytes,
                   "max_bytes_reached", p->bytes_exhausted, "notices_dropped", (json_int_t)p->notify_dropped,
                   "hosts", hosts);
}

void kbox_proxy_close(struct kbox_proxy *p) {
  if (p == NULL) return;
  kbox_proxy_stop(p);
  for (size_t i = 0; i < p->n_conns; i++) conn_free(p, p->conns[i]);
  free(p->conns);
  bool resolving = false;
  for (size_t i = 0; i < p->n_orphans; i++) {
    gai_suspend((const struct gaicb *const *)&p->orphans[i], 1, &(struct timespec){.tv_sec = 2});
    if (gai_error(p->orphans[i]) != EAI_INPROGRESS) free_gai(p->orphans[i]);
    else resolving = true; /* leaked: its completion still runs */
  }
  free(p->orphans);
  if (p->lfd >= 0) {
    close(p->lfd);
    unlink(p->cfg.sock_path);
  }
  /* A resolution still running will write to the eventfd when it ends: keep it open, so that write
     cannot land in whatever file would reuse the number. */
  if (p->wake >= 0 && !resolving) close(p->wake);
  free(p->hosts);
  free(p);
}
