#include "sandbox/net.h"

#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>

/* Free libnl objects on scope exit. */
static void put_sock(struct nl_sock **s) { if (*s) nl_socket_free(*s); }
static void put_link(struct rtnl_link **l) { if (*l) rtnl_link_put(*l); }

int kbox_net_loopback_up(kbox_error_t *err) {
  __attribute__((cleanup(put_sock))) struct nl_sock *sock = nl_socket_alloc();
  __attribute__((cleanup(put_link))) struct rtnl_link *lo = NULL;
  __attribute__((cleanup(put_link))) struct rtnl_link *change = NULL;
  if (sock == NULL) return kbox_error_make(err, 0, "bringing up lo: out of memory");
  int rc = nl_connect(sock, NETLINK_ROUTE);
  if (rc < 0) return kbox_error_make(err, 0, "bringing up lo: netlink connect: %s", nl_geterror(rc));
  rc = rtnl_link_get_kernel(sock, 0, "lo", &lo);
  if (rc < 0) return kbox_error_make(err, 0, "bringing up lo: %s", nl_geterror(rc));
  change = rtnl_link_alloc();
  if (change == NULL) return kbox_error_make(err, 0, "bringing up lo: out of memory");
  rtnl_link_set_flags(change, IFF_UP);
  rc = rtnl_link_change(sock, lo, change, 0);
  if (rc < 0) return kbox_error_make(err, 0, "bringing up lo: %s", nl_geterror(rc));
  return 0;
}
