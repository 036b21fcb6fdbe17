#include "kernel/guard.h"

#include <string.h>

int kbox_guard_prepare(struct kbox_kernel *k, struct kbox_spec *spec, kbox_error_t *err) {
  if (spec->audit_path != NULL) {
    if (kbox_audit_check_hidden(spec, err) < 0) return -1;
    if (kbox_audit_open(&k->audit, spec->audit_path, spec->id, err) < 0) return -1;
    kbox_audit_mask(spec);
  }
  if (spec->sandbox.net != KBOX_NET_ALLOW) {
    memset(&k->net, 0, sizeof(k->net));
    return 0;
  }
  if (!spec->kernel.mode && kbox_kernel_rundir_only(k, spec, err) < 0) return -1;
  return kbox_netpolicy_prepare(&k->net, spec, k->kdir, spec->kernel.mode, k->audit, err);
}

/* A cell's busy or idle status: deliver the proxy's notices held for that cell. */
static void exec_hook(void *ctx, struct kbox_broker *b) { kbox_netpolicy_service(ctx, b); }

int kbox_guard_start(struct kbox_kernel *k, const struct kbox_sandbox *sb, kbox_error_t *err) {
  if (kbox_netpolicy_start(&k->net, err) < 0) return -1;
  const struct kbox_spec *s = sb->spec;
  if (s->kernel.mode && k->net.on) {
    k->broker.exec_hook = exec_hook;
    k->broker.exec_hook_ctx = &k->net;
  }
  if (k->audit == NULL) return 0;
 const char *how = k->how ? k->how : !s->kernel.mode ? "command" : k->conn_given ? "kernelspec" : s->kernel.detach ? "detach" : "run";
  kbox_audit_start(k->audit, s, how, sb->pid);
  if (s->kernel.mode) k->broker.audit = k->audit;
  return 0;
}

bool kbox_guard_active(const struct kbox_kernel *k) { return k->audit != NULL || k->net.on; }

void kbox_guard_end(struct kbox_kernel *k, json_t *verdict) {
  kbox_netpolicy_stop(&k->net);
  if (k->net.on) json_object_set_new(verdict, "net", kbox_netpolicy_report(&k->net));
  if (k->audit == NULL) return;
  k->broker.audit = NULL;
  kbox_audit_end(k->audit, verdict);
  json_object_set_new(verdict, "audit", kbox_audit_report(k->audit));
}

void kbox_guard_cleanup(struct kbox_kernel *k) {
  kbox_netpolicy_close(&k->net);
  kbox_audit_close(k->audit);
  k->audit = NULL;
}
