#include "net/http.h"
#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "host[:port]" (IPv6 in brackets) into host and port; default_port when absent. */
static bool parse_authority(const char *s, size_t n, unsigned default_port, char *host, size_t hn, unsigned *port) {
  size_t hlen = n;
  const char *colon = NULL;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (close == NULL) return false;
    hlen = (size_t)(close - s) + 1;
    if (hlen < n) {
      if (s[hlen] != ':') return false;
      colon = s + hlen;
    }
  } else {
    colon = memchr(s, ':', n);
    if (colon != NULL) hlen = (size_t)(colon - s);
  }
  *port = default_port;
  if (colon != NULL) {
    char num[8];
    size_t pl = n - (size_t)(colon + 1 - s);
    if (pl == 0 || pl >= sizeof(num)) return false;
    memcpy(num, colon + 1, pl);
    num[pl] = '\0';
    char *end = NULL;
    unsigned long v = strtoul(num, &end, 10);
    if (*end != '\0' || v < 1 || v > 65535) return false;
    *port = (unsigned)v;
  }
  return kbox_net_host_normalise(s, hlen, host, hn);
}

/* Is this header line one the proxy drops (hop-by-hop, or meant for the proxy)? */
static bool hop_header(const char *p, size_t len) {
  return len == 0 || strncasecmp(p, "proxy-", 6) == 0 || strncasecmp(p, "connection:", 11) == 0 ||
         strncasecmp(p, "keep-alive:", 11) == 0;
}

/* The head for the origin server: "METHOD PATH VERSION", the end-to-end headers, Connection: close. */
static void rewrite(struct kbox_http_req *r, const char *method, size_t ml, bool slash, const char *path, size_t pl,
                    const char *version, size_t vl, const char *headers, size_t hl) {
  size_t cap = ml + pl + vl + hl + 64;
  char *out = xmalloc(cap);
  size_t n = (size_t)snprintf(out, cap, "%.*s %s%.*s %.*s\r\n", (int)ml, method, slash ? "/" : "", (int)pl, path,
                              (int)vl, version);
  for (const char *p = headers, *end = headers + hl; p < end;) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (eol == NULL) eol = end;
    size_t len = (size_t)(eol - p);
    if (!hop_header(p, len)) {
      memcpy(out + n, p, len);
      memcpy(out + n + len, "\r\n", 2);
      n += len + 2;
    }
    p = eol + 2;
  }
  n += (size_t)snprintf(out + n, cap - n, "Connection: close\r\n\r\n");
  r->fwd_head = out;
  r->fwd_len = n;
}

/* http://[user@]host[:port][/path][?query]: host, port and the origin-form target (*slash: it
   needs a leading "/", as in "http://h?q"). */
static const char *absolute_url(const char *t, size_t tl, struct kbox_http_req *r, const char **path, size_t *pl,
                                bool *slash) {
  if (tl < 8 || strncasecmp(t, "http://", 7) != 0)
    return "kbox: the proxy takes absolute http:// URLs and CONNECT (https goes through CONNECT)";
  const char *auth = t + 7, *end = t + tl, *aend = auth;
  while (aend < end && *aend != '/' && *aend != '?' && *aend != '#') aend++;
  const char *at = memchr(auth, '@', (size_t)(aend - auth));
  if (at != NULL) auth = at + 1; /* user:password@ is not ours to judge; the host is */
  if (!parse_authority(auth, (size_t)(aend - auth), 80, r->host, sizeof(r->host), &r->port))
    return "kbox: bad host in the request URL";
  *slash = aend == end || *aend != '/';
  *path = aend;
  *pl = (size_t)(end - aend);
  return NULL;
}

const char *kbox_http_parse_proxy_head(const char *h, size_t n, struct kbox_http_req *r) {
  memset(r, 0, sizeof(*r));
  snprintf(r->host, sizeof(r->host), "?");
  const char *eol = memmem(h, n, "\r\n", 2);
  if (eol == NULL) return "kbox: not an HTTP/1.x proxy request";
  const char *sp1 = memchr(h, ' ', (size_t)(eol - h));
  const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  if (sp1 == NULL || sp2 == NULL || (size_t)(eol - sp2 - 1) < 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
    return "kbox: not an HTTP/1.x proxy request";
  size_t ml = (size_t)(sp1 - h), tl = (size_t)(sp2 - sp1 - 1);
  const char *target = sp1 + 1;
  if (ml == 7 && memcmp(h, "CONNECT", 7) == 0) {
    r->tunnel = true;
    if (!parse_authority(target, tl, 443, r->host, sizeof(r->host), &r->port)) return "kbox: CONNECT needs host:port";
    return NULL;
  }
  const char *path = NULL;
  size_t pl = 0;
  bool slash = false;
  const char *why = absolute_url(target, tl, r, &path, &pl, &slash);
  if (why != NULL) return why;
  rewrite(r, h, ml, slash, path, pl, sp2 + 1, (size_t)(eol - sp2 - 1), eol + 2, n - (size_t)(eol + 2 - h));
  return NULL;
}

void kbox_http_req_free(struct kbox_http_req *r) {
  free(r->fwd_head);
  r->fwd_head = NULL;
}
