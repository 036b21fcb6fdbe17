/* --net allow=RULE[,RULE...]: which host names and ports the proxy may connect to, and which
   resolved addresses it refuses whatever the name (loopback, link-local, private unless named). */
#ifndef KBOX_NET_RULES_H
#define KBOX_NET_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "util/error.h"
#include "util/strv.h"

#define KBOX_NET_HOST_MAX 254

struct kbox_net_rule {
  char host[KBOX_NET_HOST_MAX + 1]; /* lower case, no trailing dot; for *.d: "d" */
  bool wildcard;                    /* *.domain: any name below domain (not domain itself) */
  bool is_addr;                     /* host is an IP address literal */
  unsigned port;                    /* 0: the default ports 443 and 80 */
};

struct kbox_net_rules {
  struct kbox_net_rule *v;
  size_t n;
};

/* Append the rules of a comma-separated list (host | *.domain | host:port | *.domain:port,
   IPv6 literals in brackets). `what` names the source in errors ("--net allow"). */
int kbox_net_rules_parse(struct kbox_net_rules *r, const char *list, const char *what, kbox_error_t *err);
void kbox_net_rules_free(struct kbox_net_rules *r);
/* Parse every list of LISTS (e.g. the --net allow values and a profile's) into r. */
int kbox_net_rules_parse_all(struct kbox_net_rules *r, const struct kbox_strv *lists, const char *what, kbox_error_t *err);
/* Only check LISTS (bad rules are refused before anything starts). */
int kbox_net_rules_check(const struct kbox_strv *lists, const char *what, kbox_error_t *err);
/* Normalise a host name as asked by a client (lower case, no trailing dot, brackets of an IPv6
   literal removed); false when it is not a plausible host name or address. */
bool kbox_net_host_normalise(const char *in, size_t n, char *out, size_t outsz);
/* Does any rule allow host:port? *host_known says whether some rule names the host (for any port). */
bool kbox_net_rules_allow(const struct kbox_net_rules *r, const char *host, unsigned port, bool *host_known);
/* Does a rule name this exact address literal (the condition for a private address)? */
bool kbox_net_rules_name_addr(const struct kbox_net_rules *r, const struct sockaddr *sa);
/* "a.example, *.b.org:8443" (truncated with "..." when long). */
void kbox_net_rules_describe(const struct kbox_net_rules *r, char *out, size_t n);
/* The ports rules allow for host ("443,80" / "8443"), for messages. */
void kbox_net_rules_ports_of(const struct kbox_net_rules *r, const char *host, char *out, size_t n);

enum kbox_addr_class {
  KBOX_ADDR_PUBLIC,
  KBOX_ADDR_LOOPBACK,   /* 127/8, ::1 */
  KBOX_ADDR_LINK_LOCAL, /* 169.254/16 (cloud metadata), fe80::/10 */
  KBOX_ADDR_PRIVATE,    /* 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), fc00::/7 */
  KBOX_ADDR_RESERVED,   /* 0/8, multicast, broadcast, 240/4, ::, other special ranges */
};
enum kbox_addr_class kbox_net_addr_class(const struct sockaddr *sa);
const char *kbox_net_addr_class_name(enum kbox_addr_class c);
/* Numeric text of an address (no port). */
void kbox_net_addr_text(const struct sockaddr *sa, char *out, size_t n);

#endif
