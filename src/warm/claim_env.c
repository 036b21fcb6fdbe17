/* libkbox-warm.so, in a pool kernel being claimed (docs/warm.md, "The pool"): the environment and
   cwd the claim's request gives, computed exactly as a forked kernel's (kbox_workload_env), for
   zygote.py to apply before the client connects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/workload.h"
#include "security/seccomp.h"
#include "warm/pool.h"
#include "warm/proto.h"

int kbox_warm_claim_env(const char *req, size_t len, char *envbuf, size_t envcap, char *cwd, size_t cwdcap) {
  struct kbox_spec spec;
  struct kbox_seccomp_compiled progs;
  kbox_error_t err = NULL;
  kbox_spec_init(&spec);
  memset(&progs, 0, sizeof(progs));
  int rc = -1;
  if (envcap < 2 || cwdcap < 2 || kbox_warm_decode(req, len, &spec, &progs, &err) < 0) goto out;
  const char *home = getenv("HOME"); /* the pool kernel's: the same user's home */
  struct kbox_strv env = {0};
  kbox_workload_env(&spec, home != NULL ? home : "/", &env);
  kbox_warm_pack_env(&env, envbuf, envcap);
  kbox_strv_free(&env);
  snprintf(cwd, cwdcap, "%s", spec.sandbox.workdir != NULL ? spec.sandbox.workdir : home != NULL ? home : "/");
  rc = spec.sandbox.workdir != NULL; /* the claimer says when it is mounted */
out:
  for (size_t i = 0; i < progs.n; i++) free(progs.progs[i].filter);
  kbox_error_free(&err);
  kbox_spec_free(&spec);
  return rc;
}
