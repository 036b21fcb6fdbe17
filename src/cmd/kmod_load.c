/* Loading kbox-kernel.so (cmd/kmod.h): next to the binary in a build tree, else from the
   installed private library directory. */
#include "cmd/kmod.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util/error.h"
#include "util/paths.h"

/* Where the module is: the binary's directory when it runs from its build tree (so a build
   never picks up an installed module of another version), else KBOX_PKGLIBDIR. */
static void module_path(char *buf, size_t n) {
  char exe[PATH_MAX];
  ssize_t len = kbox_running_from_source_tree() ? readlink("/proc/self/exe", exe, sizeof(exe) - 1) : -1;
  char *slash = len > 0 ? memrchr(exe, '/', (size_t)len) : NULL;
  if (slash != NULL) snprintf(buf, n, "%.*s/%s", (int)(slash - exe), exe, KBOX_KMOD_NAME);
  else snprintf(buf, n, "%s/%s", KBOX_PKGLIBDIR, KBOX_KMOD_NAME);
}

/* dlopen the module and check that it is this build's. */
static const struct kbox_kmod *load(kbox_error_t *err) {
  char path[PATH_MAX + 32];
  module_path(path, sizeof(path));
  /* Lazy binding: the functions of libzmq, libstdc++, libcrypto and the rest are looked up when
     first called, not all at load (2-3 ms of CPU less on each kernel start; the entry table's
     version check below still refuses a module of another build). */
  void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
  if (h == NULL) {
    kbox_error_make(err, 0, "cannot load kbox's kernel-mode module: %s", dlerror());
    kbox_error_hint(err, "kernel mode and the verbs exec, ps, inspect, interrupt, kill and entrypoint need %s (installed with kbox); `kbox run -- CMD` works without it", path);
    return NULL;
  }
  const struct kbox_kmod *m = dlsym(h, KBOX_KMOD_SYMBOL);
  if (m == NULL || m->size != sizeof(*m) || strcmp(m->version, KBOX_VERSION) != 0) {
    kbox_error_make(err, 0, "%s is not the kernel-mode module of this kbox (%s)", path,
                    m == NULL ? "no entry table" : "another version");
    kbox_error_hint(err, "reinstall kbox so the binary and %s come from the same build", KBOX_KMOD_NAME);
    dlclose(h);
    return NULL;
  }
  return m; /* never closed: it lives as long as the process */
}

const struct kbox_kmod *kbox_kmod_get(void) {
  static const struct kbox_kmod *mod;
  if (mod != NULL) return mod;
  kbox_error_t err = NULL;
  if ((mod = load(&err)) == NULL) kbox_error_report(&err);
  return mod;
}

#define KMOD_VERB(name)                                        \
  int kbox_kmod_##name(int argc, char **argv) {                \
    const struct kbox_kmod *m = kbox_kmod_get();               \
    return m != NULL ? m->name(argc, argv) : KBOX_EXIT_RUNTIME; \
  }
KMOD_VERB(exec)
KMOD_VERB(ps)
KMOD_VERB(inspect)
KMOD_VERB(interrupt)
KMOD_VERB(kill)
KMOD_VERB(entrypoint)
