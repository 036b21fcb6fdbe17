#include "net/rules.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/cleanup.h"

bool kbox_net_host_normalise(const char *in, size_t n, char *out, size_t outsz) {
  if (n >= 2 && in[0] == '[' && in[n - 1] == ']') {
    in++;
    n -= 2;
  }
  if (n > 0 && in[n - 1] == '.') n--;
  if (n == 0 || n > KBOX_NET_HOST_MAX || n >= outsz) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)in[i];
    if (!isalnum(c) && c != '-' && c != '.' && c != ':' && c != '_') return false;
    out[i] = (char)tolower(c);
  }
  out[n] = '\0';
  return true;
}

/* Is s an IPv4 or IPv6 address literal? */
static bool is_addr_literal(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* One rule: [*.]host[:port] or [v6][:port]. */
static int parse_one(struct kbox_net_rule *r, const char *tok, const char *what, kbox_error_t *err) {
  memset(r, 0, sizeof(*r));
  const char *host = tok, *port = NULL;
  size_t hn = strlen(tok);
  if (tok[0] == '[') {
    const char *close = strchr(tok, ']');
    if (close == NULL) return kbox_error_make(err, 0, "%s: '%s': missing ']' after the IPv6 address", what, tok);
    hn = (size_t)(close - tok) + 1;
    if (close[1] == ':') port = close + 2;
    else if (close[1] != '\0') return kbox_error_make(err, 0, "%s: '%s': expected ':PORT' after ']'", what, tok);
  } else {
    const char *colon = strchr(tok, ':');
    if (colon != NULL && strchr(colon + 1, ':') != NULL)
      return kbox_error_make(err, 0, "%s: '%s': write IPv6 addresses in brackets, e.g. [2001:db8::1]:443", what, tok);
    if (colon != NULL) {
      hn = (size_t)(colon - tok);
      port = colon + 1;
    }
  }
  if (hn > 2 && host[0] == '*' && host[1] == '.') {
    r->wildcard = true;
    host += 2;
    hn -= 2;
  }
  if (!kbox_net_host_normalise(host, hn, r->host, sizeof(r->host)) || strchr(r->host, '*'))
    return kbox_error_make(err, 0, "%s: '%s' is not a host name, *.domain or address (e.g. data.example.org, "
                                   "*.example.org, files.example.org:8443)", what, tok);
  r->is_addr = is_addr_literal(r->host);
  if (r->is_addr && r->wildcard) return kbox_error_make(err, 0, "%s: '%s': '*.' goes with domain names only", what, tok);
  if (port != NULL) {
    char *end = NULL;
    unsigned long p = strtoul(port, &end, 10);
    if (port[0] == '\0' || *end != '\0' || p < 1 || p > 65535)
      return kbox_error_make(err, 0, "%s: '%s': the port must be a number from 1 to 65535", what, tok);
    r->port = (unsigned)p;
  }
  return 0;
}

int kbox_net_rules_parse(struct kbox_net_rules *r, const char *list, const char *what, kbox_error_t *err) {
  cleanup_free char *copy = xstrdup(list);
  size_t added = 0;
  for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ') tok++;
    if (*tok == '\0') continue;
    r->v = xrealloc(r->v, (r->n + 1) * sizeof(*r->v));
    if (parse_one(&r->v[r->n], tok, what, err) < 0) return -1;
    r->n++;
    added++;
  }
  if (added == 0) return kbox_error_make(err, 0, "%s: no rule given (e.g. allow=data.example.org,*.example.com:8443)", what);
  return 0;
}

void kbox_net_rules_free(struct kbox_net_rules *r) {
  free(r->v);
  r->v = NULL;
  r->n = 0;
}

/* Does rule r name host (ignoring the port)? */
static bool host_matches(const struct kbox_net_rule *r, const char *host) {
  if (!r->wildcard) return strcmp(r->host, host) == 0;
  size_t hl = strlen(host), dl = strlen(r->host);
  return hl > dl + 1 && host[hl - dl - 1] == '.' && strcmp(host + hl - dl, r->host) == 0;
}

static bool port_matches(const struct kbox_net_rule *r, unsigned port) {
  return r->port == 0 ? (port == 443 || port == 80) : r->port == port;
}

bool kbox_net_rules_allow(const struct kbox_net_rules *r, const char *host, unsigned port, bool *host_known) {
  *host_known = false;
  for (size_t i = 0; i < r->n; i++) {
    if (!host_matches(&r->v[i], host)) continue;
    *host_known = true;
    if (port_matches(&r->v[i], port)) return true;
  }
  return false;
}

bool kbox_net_rules_name_addr(const struct kbox_net_rules *r, const struct sockaddr *sa) {
  char text[64];
  kbox_net_addr_text(sa, text, sizeof(text));
  for (size_t i = 0; i < r->n; i++) {
    if (!r->v[i].is_addr) continue;
    unsigned char a[sizeof(struct in6_addr)];
    int fam = strchr(r->v[i].host, ':') ? AF_INET6 : AF_INET;
    if (fam != sa->sa_family || inet_pton(fam, r->v[i].host, a) != 1) continue;
    const void *b = fam == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                   : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (memcmp(a, b, fam == AF_INET ? 4 : 16) == 0) return true;
  }
  return false;
}

/* Append "host[:port]" of rule r to out. */
static void rule_text(const struct kbox_net_rule *r, char *out, size_t n) {
  bool v6 = strchr(r->host, ':') != NULL;
  if (r->port) snprintf(out, n, "%s%s%s%s:%u", r->wildcard ? "*." : "", v6 ? "[" : "", r->host, v6 ? "]" : "", r->port);
  else snprintf(out, n, "%s%s%s%s", r->wildcard ? "*." : "", v6 ? "[" : "", r->host, v6 ? "]" : "");
}

void kbox_net_rules_describe(const struct kbox_net_rules *r, char *out, size_t n) {
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < r->n; i++) {
    char one[300];
    rule_text(&r->v[i], one, sizeof(one));
    if (used + strlen(one) + 6 >= n) {
      snprintf(out + used, n - used, "%s...", i ? ", " : "");
      return;
    }
    used += (size_t)snprintf(out + used, n - used, "%s%s", i ? ", " : "", one);
  }
}

void kbox_net_rules_ports_of(const struct kbox_net_rules *r, const char *host, char *out, size_t n) {
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < r->n && used + 16 < n; i++) {
    if (!host_matches(&r->v[i], host)) continue;
    if (r->v[i].port) used += (size_t)snprintf(out + used, n - used, "%s%u", used ? "," : "", r->v[i].port);
    else used += (size_t)snprintf(out + used, n - used, "%s443,80", used ? "," : "");
  }
}

/* Class of an IPv4 address in host byte order. */
static enum kbox_addr_class class_v4(uint32_t a) {
  if ((a >> 24) == 127) return KBOX_ADDR_LOOPBACK;
  if ((a >> 16) == 0xa9fe) return KBOX_ADDR_LINK_LOCAL;
  if ((a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 || (a >> 22) == (100u << 2 | 1))
    return KBOX_ADDR_PRIVATE;
  if ((a >> 24) == 0 || (a >> 28) >= 0xe) return KBOX_ADDR_RESERVED; /* 0/8, multicast, 240/4, broadcast */
  return KBOX_ADDR_PUBLIC;
}

enum kbox_addr_class kbox_net_addr_class(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) return class_v4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
  if (sa->sa_family != AF_INET6) return KBOX_ADDR_RESERVED;
  const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
  const uint8_t *b = a->s6_addr;
  if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
    if (IN6_IS_ADDR_UNSPECIFIED(a)) return KBOX_ADDR_RESERVED;
    if (IN6_IS_ADDR_LOOPBACK(a)) return KBOX_ADDR_LOOPBACK;
    return class_v4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
  }
  if (IN6_IS_ADDR_LOOPBACK(a)) return KBOX_ADDR_LOOPBACK;
  if (IN6_IS_ADDR_LINKLOCAL(a)) return KBOX_ADDR_LINK_LOCAL;
  if ((b[0] & 0xfe) == 0xfc || IN6_IS_ADDR_SITELOCAL(a)) return KBOX_ADDR_PRIVATE;
  if (b[0] == 0xff || b[0] == 0 || (b[0] == 0x20 && b[1] == 0x02) || (b[0] == 0x00 && b[1] == 0x64))
    return KBOX_ADDR_RESERVED; /* multicast, ::/8, 6to4 and NAT64 (can embed any IPv4 address) */
  return KBOX_ADDR_PUBLIC;
}

const char *kbox_net_addr_class_name(enum kbox_addr_class c) {
  switch (c) {
  case KBOX_ADDR_PUBLIC: return "public";
  case KBOX_ADDR_LOOPBACK: return "loopback";
  case KBOX_ADDR_LINK_LOCAL: return "link-local";
  case KBOX_ADDR_PRIVATE: return "private";
  case KBOX_ADDR_RESERVED: return "reserved";
  }
  return "?";
}

void kbox_net_addr_text(const struct sockaddr *sa, char *out, size_t n) {
  const void *a = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                           : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
  if (inet_ntop(sa->sa_family, a, out, (socklen_t)n) == NULL) snprintf(out, n, "?");
}

int kbox_net_rules_parse_all(struct kbox_net_rules *r, const struct kbox_strv *lists, const char *what, kbox_error_t *err) {
  for (size_t i = 0; i < lists->n; i++)
    if (kbox_net_rules_parse(r, lists->v[i], what, err) < 0) return -1;
  return 0;
}

int kbox_net_rules_check(const struct kbox_strv *lists, const char *what, kbox_error_t *err) {
  struct kbox_net_rules r = {0};
  int rc = kbox_net_rules_parse_all(&r, lists, what, err);
  kbox_net_rules_free(&r);
  return rc;
}
