#include "kernel/netpolicy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernel/launch.h"
#include "sandbox/idmap.h"
#include "sandbox/net_relay.h"
#include "util/alloc.h"
#include "util/log.h"



/* The proxy thread records its decisions straight into the audit log (records are one write each). */
static void on_event(void *ctx, const char *event, json_t *fields) {
  kbox_audit_record(ctx, event, json_incref(fields));
}

/* HTTP(S)_PROXY for the usual clients (urllib, requests, pandas, fsspec, curl, pip). */
static void proxy_env(struct kbox_spec *spec) {
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", KBOX_NET_RELAY_PORT);
  static const char *const names[] = {"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (kbox_strv_getenv(&spec->sandbox.env, names[i]) == NULL) kbox_strv_setenv(&spec->sandbox.env, names[i], url);
  if (kbox_strv_getenv(&spec->sandbox.env, "NO_PROXY") == NULL) kbox_strv_setenv(&spec->sandbox.env, "NO_PROXY", "localhost,127.0.0.1,::1");
  if (kbox_strv_getenv(&spec->sandbox.env, "no_proxy") == NULL) kbox_strv_setenv(&spec->sandbox.env, "no_proxy", "localhost,127.0.0.1,::1");
}

int kbox_netpolicy_prepare(struct kbox_netpolicy *np, struct kbox_spec *spec, const char *kdir, bool kernel_mode,
                           struct kbox_audit *audit, kbox_error_t *err) {
  memset(np, 0, sizeof(*np));
  np->notes[0] = np->notes[1] = -1;
  if (spec->sandbox.net != KBOX_NET_ALLOW) return 0;
  np->on = true;
  if (kbox_net_rules_parse_all(&np->rules, &spec->sandbox.net_allow, "--net allow", err) < 0) return -1;
  if (kernel_mode && pipe2(np->notes, O_CLOEXEC | O_NONBLOCK) < 0) return kbox_error_make(err, errno, "--net: pipe");
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", kdir, KBOX_NET_PROXY_SOCK);
  struct kbox_proxy_config cfg = {
      .rules = &np->rules, .sock_path = path, .sock_uid = (uid_t)-1, .sock_gid = (gid_t)-1,
      .max_bytes = spec->sandbox.net_max_bytes, .max_conns = KBOX_NET_DEFAULT_MAX_CONNS, .idle_ms = KBOX_NET_IDLE_MS,
      .total_ms = KBOX_NET_TOTAL_MS, .notify_fd = kernel_mode ? np->notes[1] : 2,
      .on_event = audit ? on_event : NULL, .event_ctx = audit,
  };
  if (!spec->rootless) {
    struct kbox_idmap map;
    if (kbox_idmap_compute(spec, &map, err) < 0) return -1;
    cfg.sock_uid = map.base + spec->sandbox.uid;
    cfg.sock_gid = map.base + spec->sandbox.gid;
  }
  json_object_seed(0); /* before a second thread uses jansson */
  if (kbox_proxy_open(&np->proxy, &cfg, err) < 0) return -1;
  free(spec->sandbox.net_relay_sock);
  spec->sandbox.net_relay_sock = xasprintf("%s/%s", KBOX_KERNEL_INNER_DIR, KBOX_NET_PROXY_SOCK);
  proxy_env(spec);
  return 0;
}

int kbox_netpolicy_start(struct kbox_netpolicy *np, kbox_error_t *err) {
  return np->on ? kbox_proxy_start(np->proxy, err) : 0;
}

int kbox_netpolicy_fd(const struct kbox_netpolicy *np) { return np->on ? np->notes[0] : -1; }

/* Publish the complete lines held so far as stderr of the running cell. */
static void publish(struct kbox_netpolicy *np, struct kbox_broker *b) {
  char *start = np->pending, *nl;
  while ((nl = memchr(start, '\n', np->pending_len - (size_t)(start - np->pending))) != NULL) {
    *nl = '\0';
    kbox_warn("%s", start + (strncmp(start, "kbox: ", 6) == 0 ? 6 : 0));
    char *line = NULL;
    line = xasprintf("%s\n", start);
    kbox_broker_publish_stream(b, "stderr", line);
    free(line);
    start = nl + 1;
  }
  np->pending_len -= (size_t)(start - np->pending);
  memmove(np->pending, start, np->pending_len);
}

/* Notices are held while no cell is known to run: ipykernel sends a cell's busy status from its
   IOPub thread, which can reach the broker after the cell's first refused request. They go out at
   the cell's busy, or at the latest before its idle (exec_hook). */
void kbox_netpolicy_service(struct kbox_netpolicy *np, struct kbox_broker *b) {
  if (!np->on || np->notes[0] < 0) return;
  for (;;) {
    size_t room = sizeof(np->pending) - np->pending_len;
    if (room == 0) { /* held too much without a cell: keep the newest */
      np->pending_len = 0;
      room = sizeof(np->pending);
    }
    ssize_t r = read(np->notes[0], np->pending + np->pending_len, room);
    if (r <= 0) break;
    np->pending_len += (size_t)r;
  }
  if (b->exec_id[0] != '\0') publish(np, b);
}

/* Notices held longer than this without a cell are published without a parent (and logged). */
void kbox_netpolicy_flush_stale(struct kbox_netpolicy *np, struct kbox_broker *b) {
  if (np->on && np->pending_len > 0 && b->exec_id[0] == '\0') publish(np, b);
}

void kbox_netpolicy_stop(struct kbox_netpolicy *np) {
  if (np->on) kbox_proxy_stop(np->proxy);
}

json_t *kbox_netpolicy_report(struct kbox_netpolicy *np) {
  if (!np->on) return json_pack("{s:s}", "mode", "none");
  return kbox_proxy_report(np->proxy);
}

void kbox_netpolicy_close(struct kbox_netpolicy *np) {
  if (!np->on) return;
  kbox_proxy_close(np->proxy);
  np->proxy = NULL;
  for (int i = 0; i < 2; i++)
    if (np->notes[i] >= 0) close(np->notes[i]);
  np->notes[0] = np->notes[1] = -1;
  kbox_net_rules_free(&np->rules);
  np->on = false;
}
