#include "security/seccomp.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/cleanup.h"

static void release_ctx(scmp_filter_ctx *c) {
  if (*c != NULL) seccomp_release(*c);
}

static bool is_allowing(uint32_t action) { return action == SCMP_ACT_ALLOW || action == SCMP_ACT_LOG; }

/* Does any allowing rule name this syscall? */
static bool allowed_somewhere(const struct kbox_sc_def *d, const char *name) {
  for (size_t i = 0; i < d->n_rules; i++) {
    if (!is_allowing(d->rules[i].action)) continue;
    for (size_t k = 0; k < d->rules[i].n_names; k++)
      if (strcmp(d->rules[i].names[k], name) == 0) return true;
  }
  return false;
}

/* A refusing rule on a syscall that an allow rule also opens: it goes to the overlay filter. */
static bool is_override(const struct kbox_sc_def *d, const struct kbox_sc_rule *r, const char *name) {
  return !is_allowing(r->action) && allowed_somewhere(d, name);
}

/* Can this machine issue syscalls of arch at all? Others are left out of the filter: they can never
   occur here, and each one costs compile time (about 4 ms for aarch64 on x86_64). */
static bool arch_runs_here(uint32_t arch) {
  uint32_t native = seccomp_arch_native();
  if (arch == native) return true;
  if (native == SCMP_ARCH_X86_64) return arch == SCMP_ARCH_X86 || arch == SCMP_ARCH_X32;
  if (native == SCMP_ARCH_AARCH64) return arch == SCMP_ARCH_ARM;
  return false;
}

static scmp_filter_ctx new_ctx(const struct kbox_sc_def *d, uint32_t default_action, kbox_error_t *err) {
  scmp_filter_ctx ctx = seccomp_init(default_action);
  if (ctx == NULL) {
    kbox_error_make(err, 0, "seccomp_init failed (is libseccomp usable on this architecture?)");
    return NULL;
  }
  seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  for (size_t i = 0; i < d->n_arches; i++) {
    if (!arch_runs_here(d->arches[i])) continue;
    int r = seccomp_arch_add(ctx, d->arches[i]);
    if (r < 0 && r != -EEXIST) {
      seccomp_release(ctx);
      kbox_error_make(err, -r, "seccomp: adding architecture %u", d->arches[i]);
      return NULL;
    }
  }
  return ctx;
}

/* Add the rules of d that belong to this filter (overlay: the overrides; main: the rest). */
static int add_rules(scmp_filter_ctx ctx, const struct kbox_sc_def *d, bool overlay, uint32_t default_action,
                     size_t *added, kbox_error_t *err) {
  for (size_t i = 0; i < d->n_rules; i++) {
    const struct kbox_sc_rule *r = &d->rules[i];
    struct scmp_arg_cmp cmp[KBOX_SC_MAX_ARGS];
    for (unsigned a = 0; a < r->n_args; a++)
      cmp[a] = (struct scmp_arg_cmp){r->args[a].index, (enum scmp_compare)r->args[a].op, r->args[a].value,
                                     r->args[a].value_two};
    for (size_t k = 0; k < r->n_names; k++) {
      if (is_override(d, r, r->names[k]) != overlay || r->action == default_action) continue;
      int nr = seccomp_syscall_resolve_name(r->names[k]);
      if (nr == __NR_SCMP_ERROR) continue; /* exists on other architectures only */
      int rc = seccomp_rule_add_array(ctx, r->action, nr, r->n_args, cmp);
      if (rc < 0)
        return kbox_error_make(err, -rc, "seccomp.syscalls[%zu]: libseccomp refused the rule for '%s'", i, r->names[k]);
      (*added)++;
    }
  }
  return 0;
}

/* Export ctx as a BPF program (read back through a memfd). */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *out, kbox_error_t *err) {
  cleanup_close int fd = memfd_create("kbox-seccomp", MFD_CLOEXEC);
  if (fd < 0) return kbox_error_make(err, errno, "memfd_create");
  int rc = seccomp_export_bpf(ctx, fd);
  if (rc < 0) return kbox_error_make(err, -rc, "seccomp: generating the BPF program");
  struct stat st;
  if (fstat(fd, &st) < 0) return kbox_error_make(err, errno, "fstat");
  size_t n = (size_t)st.st_size / sizeof(struct sock_filter);
  if (n == 0 || n > BPF_MAXINSNS)
    return kbox_error_make(err, 0, "seccomp: the filter has %zu instructions (the kernel accepts 1 to %d); "
                                   "simplify the profile", n, BPF_MAXINSNS);
  out->filter = xcalloc(n, sizeof(struct sock_filter));
  if (pread(fd, out->filter, n * sizeof(struct sock_filter), 0) != (ssize_t)(n * sizeof(struct sock_filter)))
    return kbox_error_make(err, errno, "reading the BPF program back");
  out->len = (unsigned short)n;
  return 0;
}

/* Build one of the two filters; *prog->filter stays NULL when it would have no effect. */
static int build(const struct kbox_sc_def *d, bool overlay, struct sock_fprog *prog, kbox_error_t *err) {
  uint32_t def = overlay ? SCMP_ACT_ALLOW : d->default_action;
  __attribute__((cleanup(release_ctx))) scmp_filter_ctx ctx = new_ctx(d, def, err);
  if (ctx == NULL) return -1;
  size_t added = 0;
  if (add_rules(ctx, d, overlay, def, &added, err) < 0) return -1;
  if (added == 0 && (overlay || def == SCMP_ACT_ALLOW)) return 0;
  return export_bpf(ctx, prog, err);
}

int kbox_seccomp_compile(const struct kbox_sc_def *def, struct kbox_seccomp_compiled *out, kbox_error_t *err) {
  memset(out, 0, sizeof(*out));
  struct sock_fprog overlay = {0}, main_prog = {0};
  if (build(def, true, &overlay, err) < 0 || build(def, false, &main_prog, err) < 0) {
    free(overlay.filter);
    free(main_prog.filter);
    return kbox_error_prefix(err, "compiling the seccomp filter");
  }
  if (overlay.filter != NULL) out->progs[out->n++] = overlay;
  if (main_prog.filter != NULL) out->progs[out->n++] = main_prog;
  return 0;
}

int kbox_seccomp_install(const struct kbox_seccomp_compiled *c, kbox_error_t *err) {
  for (size_t i = 0; i < c->n; i++)
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &c->progs[i]) < 0)
      return kbox_error_make(err, errno, "installing the seccomp filter (%zu of %zu)", i + 1, c->n);
  return 0;
}

void kbox_seccomp_compiled_free(struct kbox_seccomp_compiled *c) {
  for (size_t i = 0; i < c->n; i++) free(c->progs[i].filter);
  memset(c, 0, sizeof(*c));
}
