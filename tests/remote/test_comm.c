/* The comm port: signals reach the callback, probes and shutdown work, junk is ignored. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote/comm.h"

static int got[16];
static int n_got;

static int on_signal(int signum, void *data) {
  if (n_got < 16) got[n_got++] = signum;
  return *(int *)data;
}

static int connect_to(unsigned port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  return fd;
}

/* Send text on a new connection (closing it when `close_after`), then let the listener serve it. */
static void request(struct kbox_comm *c, const char *text, size_t len, bool close_after) {
  int fd = connect_to(c->port);
  cr_assert_eq(write(fd, text, len), (ssize_t)len);
  if (close_after) close(fd);
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  cr_assert_eq(poll(&p, 1, 5000), 1, "the listener never became readable");
  kbox_comm_on_readable(c);
  if (!close_after) close(fd);
}

static struct kbox_comm comm;
static int alive = 0;

static void setup(void) {
  n_got = 0;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_comm_listen(&comm, 0, on_signal, &alive, &err), 0);
  cr_assert_gt(comm.port, 0);
}

TestSuite(comm, .init = setup);

Test(comm, signals_and_probe_reach_the_callback) {
  request(&comm, "{\"signum\": 2}", 13, true);
  request(&comm, "{\"signum\": 0}", 13, true);
  /* a client that keeps the connection open after a complete object is served too */
  request(&comm, "{\"signum\": 15}", 14, false);
  cr_assert_eq(n_got, 3);
  cr_assert_eq(got[0], 2);
  cr_assert_eq(got[1], 0);
  cr_assert_eq(got[2], 15);
  cr_assert_eq(comm.handled, 3);
  cr_assert_eq(comm.rejected, 0);
  cr_assert_geq(comm.fd, 0);
}

Test(comm, malformed_and_oversized_requests_are_ignored) {
  request(&comm, "not json", 8, true);
  request(&comm, "[1,2]", 5, true);
  request(&comm, "{\"signum\": \"two\"}", 17, true);
  request(&comm, "{\"signum\": 99999}", 17, true);
  request(&comm, "{\"hello\": 1}", 12, true);
  request(&comm, "{\"shutdown\": 7}", 15, true);
  request(&comm, "", 0, true);
  char big[4000];
  memset(big, ' ', sizeof(big));
  memcpy(big + sizeof(big) - 13, "{\"signum\": 2}", 13);
  request(&comm, big, sizeof(big), true);
  cr_assert_eq(n_got, 0, "a bad request reached the kernel");
  cr_assert_eq(comm.rejected, 8);
  /* still serving */
  request(&comm, "{\"signum\": 2}", 13, true);
  cr_assert_eq(n_got, 1);
}

Test(comm, shutdown_stops_listening) {
  unsigned port = comm.port;
  request(&comm, "{\"shutdown\": 1}", 15, true);
  cr_assert_eq(comm.fd, -1);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_neq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "the comm port still accepts connections");
  close(fd);
}

Test(comm, listens_on_all_addresses) {
  struct sockaddr_in a;
  socklen_t l = sizeof(a);
  cr_assert_eq(getsockname(comm.fd, (struct sockaddr *)&a, &l), 0);
  cr_assert_eq(a.sin_addr.s_addr, htonl(INADDR_ANY));
}
