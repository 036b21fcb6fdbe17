/* The sandbox's own set-up steps as a probe: one throwaway child cloned with the namespaces that
   work, running kbox run's mount, network, identity, capability and seccomp steps in their order. */
#ifndef KBOX_PROBE_SANDBOX_H
#define KBOX_PROBE_SANDBOX_H

#include "sandbox/probe.h"

/* Fill the hostname, loopback, overlay, proc, idmap, caps and seccomp verdicts of p. Without a
   --workdir in spec, try_workdir shares a temporary one (doctor: could kbox share one?); else the
   idmap verdict is about the layers only (the entrypoint: exactly the sandbox it will build). */
void kbox_probe_sandbox(struct kbox_probe *p, const struct kbox_spec *spec, uint64_t ns_flags, bool try_workdir);

#endif
