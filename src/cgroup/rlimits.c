/* The rlimit fallback for limits no cgroup carries (rootless without delegation, no controllers). */
#include "cgroup/cgroup.h"

#include <errno.h>
#include <sys/resource.h>

/* Values set on the host before clone3 (the sandbox's processes get a copy), flags once known. */
static struct {
  bool as;
  rlim_t as_bytes;
  bool nproc;
  rlim_t nproc_max;
  bool soft_only;
} plan;

void kbox_rlimits_soft_only(void) { plan.soft_only = true; }

void kbox_rlimits_plan_values(const struct kbox_cgroup *cg) {
  plan.as_bytes = (rlim_t)(cg->lim.memory + cg->lim.swap);
  plan.nproc_max = (rlim_t)cg->lim.pids;
}

void kbox_rlimits_plan(const struct kbox_cgroup *cg) {
  kbox_rlimits_plan_values(cg);
  plan.as = cg->mech[KBOX_LIM_MEMORY] == KBOX_MECH_RLIMIT;
  plan.nproc = cg->mech[KBOX_LIM_PIDS] == KBOX_MECH_RLIMIT;
}

unsigned kbox_rlimits_plan_bits(void) { return (plan.as ? 1u : 0) | (plan.nproc ? 2u : 0); }

void kbox_rlimits_plan_set_bits(unsigned bits) {
  plan.as = (bits & 1) != 0;
  plan.nproc = (bits & 2) != 0;
}

int kbox_rlimits_apply(kbox_error_t *err) {
  if (plan.as && plan.soft_only) { /* a zygote's: its kernels set their own (docs/warm.md) */
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) == 0 && (r.rlim_max == RLIM_INFINITY || r.rlim_max > plan.as_bytes)) r.rlim_cur = plan.as_bytes;
    if (setrlimit(RLIMIT_AS, &r) < 0)
      return kbox_error_make(err, errno, "setrlimit(RLIMIT_AS, %llu) for the memory limit", (unsigned long long)plan.as_bytes);
    return 0;
  }
  if (plan.as) {
    struct rlimit r = {plan.as_bytes, plan.as_bytes};
    if (setrlimit(RLIMIT_AS, &r) < 0)
      return kbox_error_make(err, errno, "setrlimit(RLIMIT_AS, %llu) for the memory limit", (unsigned long long)plan.as_bytes);
  }
  if (plan.nproc) {
    struct rlimit r = {plan.nproc_max, plan.nproc_max};
    if (setrlimit(RLIMIT_NPROC, &r) < 0)
      return kbox_error_make(err, errno, "setrlimit(RLIMIT_NPROC, %llu) for the pids limit", (unsigned long long)plan.nproc_max);
  }
  return 0;
}
