/* Unit tests of --net allow rules: parsing, matching names and ports, address classes, and the
   "private only when named" rule (the proxy tests cannot reach private addresses: no traffic
   leaves loopback in tests). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "net/http.h"
#include "net/rules.h"
#include <stdlib.h>

static struct kbox_net_rules rules(const char *list) {
  struct kbox_net_rules r = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_net_rules_parse(&r, list, "--net allow", &err), 0, "%s: %s", list, err ? err->msg : "");
  return r;
}

static void bad(const char *list, const char *msg) {
  struct kbox_net_rules r = {0};
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_net_rules_parse(&r, list, "--net allow", &err), -1, "'%s' accepted", list);
  cr_assert(strstr(err->msg, msg) != NULL, "'%s': %s", list, err->msg);
  cr_assert(strstr(err->msg, "--net allow") != NULL);
  kbox_error_free(&err);
  kbox_net_rules_free(&r);
}

static bool allows(const struct kbox_net_rules *r, const char *host, unsigned port) {
  bool known = false;
  return kbox_net_rules_allow(r, host, port, &known);
}

Test(rules, parse_and_match) {
  struct kbox_net_rules r = rules("Data.Example.org., *.cdn.example:8443, [2001:db8::1]:443,10.9.9.9");
  cr_assert_eq(r.n, 4);
  cr_assert(allows(&r, "data.example.org", 443));
  cr_assert(allows(&r, "data.example.org", 80));
  cr_assert(!allows(&r, "data.example.org", 8080), "default ports are 443 and 80 only");
  cr_assert(!allows(&r, "evil.data.example.org", 443), "a plain host does not cover its subdomains");
  cr_assert(allows(&r, "a.cdn.example", 8443));
  cr_assert(allows(&r, "x.y.cdn.example", 8443));
  cr_assert(!allows(&r, "cdn.example", 8443), "*.d covers names below d, not d");
  cr_assert(!allows(&r, "evilcdn.example", 8443), "suffix match is on a label boundary");
  cr_assert(!allows(&r, "a.cdn.example", 443), "a port in the rule replaces the defaults");
  cr_assert(allows(&r, "2001:db8::1", 443));
  bool known = false;
  cr_assert(!kbox_net_rules_allow(&r, "a.cdn.example", 443, &known) && known, "host known, port not");
  cr_assert(!kbox_net_rules_allow(&r, "other.example", 443, &known) && !known);
  char d[256];
  kbox_net_rules_describe(&r, d, sizeof(d));
  cr_assert_str_eq(d, "data.example.org, *.cdn.example:8443, [2001:db8::1]:443, 10.9.9.9");
  kbox_net_rules_ports_of(&r, "data.example.org", d, sizeof(d));
  cr_assert_str_eq(d, "443,80");
  kbox_net_rules_free(&r);
}

Test(rules, bad) {
  bad("", "no rule given");
  bad(",,", "no rule given");
  bad("a.example:0", "port must be a number");
  bad("a.example:99999", "port must be a number");
  bad("a.example:x", "port must be a number");
  bad("2001:db8::1", "write IPv6 addresses in brackets");
  bad("*.10.0.0.1", "'*.' goes with domain names");
  bad("a/b", "is not a host name");
  bad("*.*.example", "is not a host name");
  bad("[::1", "missing ']'");
}

static struct sockaddr_storage addr(const char *s) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) a4->sin_family = AF_INET;
  else if (inet_pton(AF_INET6, s, &a6->sin6_addr) == 1) a6->sin6_family = AF_INET6;
  else cr_assert_fail("bad test address %s", s);
  return ss;
}

static enum kbox_addr_class cls(const char *s) {
  struct sockaddr_storage ss = addr(s);
  return kbox_net_addr_class((struct sockaddr *)&ss);
}

Test(rules, address_classes) {
  cr_assert_eq(cls("127.0.0.1"), KBOX_ADDR_LOOPBACK);
  cr_assert_eq(cls("127.255.0.9"), KBOX_ADDR_LOOPBACK);
  cr_assert_eq(cls("::1"), KBOX_ADDR_LOOPBACK);
  cr_assert_eq(cls("::ffff:127.0.0.1"), KBOX_ADDR_LOOPBACK, "IPv4-mapped loopback");
  cr_assert_eq(cls("169.254.169.254"), KBOX_ADDR_LINK_LOCAL, "cloud metadata");
  cr_assert_eq(cls("::ffff:169.254.169.254"), KBOX_ADDR_LINK_LOCAL);
  cr_assert_eq(cls("fe80::1"), KBOX_ADDR_LINK_LOCAL);
  cr_assert_eq(cls("10.1.2.3"), KBOX_ADDR_PRIVATE);
  cr_assert_eq(cls("172.16.0.1"), KBOX_ADDR_PRIVATE);
  cr_assert_eq(cls("172.31.255.255"), KBOX_ADDR_PRIVATE);
  cr_assert_eq(cls("172.32.0.1"), KBOX_ADDR_PUBLIC);
  cr_assert_eq(cls("192.168.1.1"), KBOX_ADDR_PRIVATE);
  cr_assert_eq(cls("100.64.0.1"), KBOX_ADDR_PRIVATE, "CGNAT");
  cr_assert_eq(cls("100.128.0.1"), KBOX_ADDR_PUBLIC);
  cr_assert_eq(cls("fd00::1"), KBOX_ADDR_PRIVATE, "unique local");
  cr_assert_eq(cls("fc00::1"), KBOX_ADDR_PRIVATE);
  cr_assert_eq(cls("0.0.0.0"), KBOX_ADDR_RESERVED);
  cr_assert_eq(cls("224.0.0.1"), KBOX_ADDR_RESERVED);
  cr_assert_eq(cls("255.255.255.255"), KBOX_ADDR_RESERVED);
  cr_assert_eq(cls("::"), KBOX_ADDR_RESERVED);
  cr_assert_eq(cls("ff02::1"), KBOX_ADDR_RESERVED);
  cr_assert_eq(cls("2002:a01:203::1"), KBOX_ADDR_RESERVED, "6to4 can embed a private IPv4 address");
  cr_assert_eq(cls("64:ff9b::a01:203"), KBOX_ADDR_RESERVED, "NAT64 can embed a private IPv4 address");
  cr_assert_eq(cls("93.184.215.14"), KBOX_ADDR_PUBLIC);
  cr_assert_eq(cls("2001:4860::8888"), KBOX_ADDR_PUBLIC);
}

Test(rules, private_only_when_named) {
  struct kbox_net_rules r = rules("intra.example,10.9.9.9,[fd00::5]");
  struct sockaddr_storage a = addr("10.9.9.9"), b = addr("10.9.9.8"), c = addr("fd00::5"), d = addr("fd00::6");
  cr_assert(kbox_net_rules_name_addr(&r, (struct sockaddr *)&a));
  cr_assert(!kbox_net_rules_name_addr(&r, (struct sockaddr *)&b), "only the address the rule names");
  cr_assert(kbox_net_rules_name_addr(&r, (struct sockaddr *)&c));
  cr_assert(!kbox_net_rules_name_addr(&r, (struct sockaddr *)&d));
  kbox_net_rules_free(&r);
}

/* The proxy's request heads (net/http.h). */
static const char *head(const char *text, struct kbox_http_req *r) {
  return kbox_http_parse_proxy_head(text, strlen(text), r);
}

Test(http, connect) {
  struct kbox_http_req r;
  cr_assert_null(head("CONNECT Web.Test:8443 HTTP/1.1\r\nHost: web.test:8443\r\n\r\n", &r));
  cr_assert(r.tunnel);
  cr_assert_str_eq(r.host, "web.test");
  cr_assert_eq(r.port, 8443);
  cr_assert_null(r.fwd_head);
  cr_assert_null(head("CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n", &r));
  cr_assert_str_eq(r.host, "2001:db8::1");
  cr_assert_not_null(head("CONNECT web.test:0 HTTP/1.1\r\n\r\n", &r));
  cr_assert_not_null(head("CONNECT web.test:99999 HTTP/1.1\r\n\r\n", &r));
  cr_assert_not_null(head("CONNECT a/b:443 HTTP/1.1\r\n\r\n", &r));
  cr_assert_not_null(head("CONNECT web.test:443 SPDY/3\r\n\r\n", &r));
  cr_assert_not_null(head("garbage\r\n\r\n", &r));
}

Test(http, absolute_url_rewritten) {
  struct kbox_http_req r;
  cr_assert_null(head("GET http://user:pw@Data.Example:8080/a/b.csv?x=1 HTTP/1.1\r\nHost: data.example:8080\r\n"
                      "Proxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\n"
                      "Keep-Alive: 300\r\nAccept: */*\r\n\r\n", &r));
  cr_assert(!r.tunnel);
  cr_assert_str_eq(r.host, "data.example", "the host is the URL's, after user:pw@");
  cr_assert_eq(r.port, 8080);
  char *fwd = strndup(r.fwd_head, r.fwd_len);
  cr_assert_str_eq(fwd, "GET /a/b.csv?x=1 HTTP/1.1\r\nHost: data.example:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n");
  free(fwd);
  kbox_http_req_free(&r);
  cr_assert_null(head("GET http://h.example?q=1 HTTP/1.0\r\n\r\n", &r));
  cr_assert_str_eq(r.host, "h.example");
  cr_assert_eq(r.port, 80);
  fwd = strndup(r.fwd_head, r.fwd_len);
  cr_assert_str_eq(fwd, "GET /?q=1 HTTP/1.0\r\nConnection: close\r\n\r\n");
  free(fwd);
  kbox_http_req_free(&r);
  cr_assert_not_null(head("GET /relative HTTP/1.1\r\n\r\n", &r), "origin-form is not a proxy request");
  cr_assert_not_null(head("GET https://web.test/ HTTP/1.1\r\n\r\n", &r), "https goes through CONNECT");
}
