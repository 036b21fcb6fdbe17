/* The request head a client sends an HTTP proxy: CONNECT host:port, or an absolute http:// URL,
   rewritten for the origin server. */
#ifndef KBOX_NET_HTTP_H
#define KBOX_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "net/rules.h"

struct kbox_http_req {
  bool tunnel;                        /* CONNECT */
  char host[KBOX_NET_HOST_MAX + 1];   /* normalised (net/rules.h) */
  unsigned port;
  char *fwd_head;                     /* plain HTTP: the head for the origin server (malloc'd) */
  size_t fwd_len;
};

/* Parse head[0..n), which ends with the blank line. Returns NULL, or why it is not a proxy request
   (a line for a 400 answer). Plain HTTP gets an origin-form request line, the Proxy-* and
   Connection/Keep-Alive headers removed and "Connection: close" (one request per connection). */
const char *kbox_http_parse_proxy_head(const char *head, size_t n, struct kbox_http_req *out);
void kbox_http_req_free(struct kbox_http_req *r);

#endif
