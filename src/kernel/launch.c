#include "kernel/launch.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kernel/reaper.h"
#include "kernel/runlock.h"
#include "kernel/state.h"
#include "sandbox/idmap.h"
#include "util/alloc.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/trace.h"

#define DEFAULT_KERNEL_CMD "python3 -m ipykernel_launcher -f {connection_file}"

/* Create RUNDIR (0700, ours) and RUNDIR/k owned by the sandbox user (it binds its sockets there). */
static int make_rundir(struct kbox_kernel *k, kbox_error_t *err) {
  char base[3800];
  if (kbox_state_base(base, sizeof(base), true, err) < 0) return -1;
  kbox_runlock_sweep(base);
  k->rundir = xasprintf("%s/%s", base, k->spec->id);
  k->kdir = xasprintf("%s/k", k->rundir);
  /* Before the directory exists: a SIGKILLed kbox must not leave it (and the key in it) behind. */
  k->reaper_fd = kbox_kreaper_start(k->rundir, err);
  if (k->reaper_fd < 0) return -1;
  k->run_lock = kbox_runlock_acquire(k->rundir, err);
  if (k->run_lock < 0) {
    kbox_kreaper_forget_rundir(k->reaper_fd);
    free(k->rundir); /* not ours: cleanup must not touch it */
    free(k->kdir);
    k->rundir = k->kdir = NULL;
    return kbox_error_prefix(err, "--id %s", k->spec->id);
  }
  kbox_runlock_clear(k->rundir); /* leftovers of a dead kbox with the same id */
  if (mkdir(k->kdir, 0700) < 0) return kbox_error_make(err, errno, "creating %s", k->kdir);
  if (strlen(k->kdir) + sizeof("/kernel-65535") > sizeof(((struct sockaddr_un *)0)->sun_path))
    return kbox_error_make(err, 0, "run directory %s is too long for unix socket paths", k->kdir);
  if (!k->spec->rootless) {
    struct kbox_idmap map;
    if (kbox_idmap_compute(k->spec, &map, err) < 0) return -1;
    if (chown(k->kdir, map.base + k->spec->sandbox.uid, map.base + k->spec->sandbox.gid) < 0)
      return kbox_error_make(err, errno, "chown %s", k->kdir);
  }
  return 0;
}

/* The client-side connection: from --connection-file if it exists, else from the options. */
static int host_conn(struct kbox_kernel *k, kbox_error_t *err) {
  struct kbox_spec *s = k->spec;
  kbox_conn_init(&k->host);
  snprintf(k->host.kernel_name, sizeof(k->host.kernel_name), "kbox");
  if (s->kernel.connection_file != NULL && access(s->kernel.connection_file, F_OK) == 0) {
    k->conn_given = true;
    if (kbox_conn_read(s->kernel.connection_file, &k->host, err) < 0) return -1;
    k->host.max_message = s->kernel.max_message;
    if (kbox_conn_check_key(&k->host, s->kernel.connection_file, s->kernel.insecure_no_key, err) < 0) return -1;
    return kbox_conn_check_ports(&k->host, s->kernel.connection_file, err);
  }
  k->host.max_message = s->kernel.max_message;
  if (s->kernel.transport != NULL) snprintf(k->host.transport, sizeof(k->host.transport), "%s", s->kernel.transport);
  if (s->kernel.ip != NULL) snprintf(k->host.ip, sizeof(k->host.ip), "%s", s->kernel.ip);
  else if (strcmp(k->host.transport, "ipc") == 0) snprintf(k->host.ip, sizeof(k->host.ip), "%s/client", k->rundir);
  if (kbox_conn_new_key(&k->host, err) < 0) return -1;
  if (s->kernel.connection_file != NULL) kbox_kreaper_watch_conn(k->reaper_fd, s->kernel.connection_file, k->host.key);
  return 0;
}

/* The kernel's connection file inside the run dir (ipc, fresh key), readable by the sandbox user. */
static int kernel_conn(struct kbox_kernel *k, kbox_error_t *err) {
  struct kbox_conn inner;
  kbox_conn_init(&inner);
  snprintf(inner.transport, sizeof(inner.transport), "ipc");
  snprintf(inner.ip, sizeof(inner.ip), "%s/kernel", KBOX_KERNEL_INNER_DIR);
  snprintf(inner.kernel_name, sizeof(inner.kernel_name), "python3");
  for (int ch = 0; ch < KBOX_CH_N; ch++) inner.port[ch] = (unsigned)ch + 1;
  if (kbox_conn_new_key(&inner, err) < 0) return -1;
  k->kern = inner;
  snprintf(k->kern.ip, sizeof(k->kern.ip), "%s/kernel", k->kdir);
  char path[4096];
  snprintf(path, sizeof(path), "%s/kernel.json", k->kdir);
  if (kbox_conn_write(path, &inner, k->spec->id, true, err) < 0) return -1;
  if (!k->spec->rootless) {
    struct kbox_idmap map;
    if (kbox_idmap_compute(k->spec, &map, err) < 0) return -1;
    if (chown(path, map.base + k->spec->sandbox.uid, map.base + k->spec->sandbox.gid) < 0) return kbox_error_make(err, errno, "chown %s", path);
  }
  return 0;
}

/* argv of the kernel: --kernel-cmd (or the default) split on blanks, {connection_file} replaced,
   then the client's kernel arguments. */
static void kernel_argv(struct kbox_kernel *k) {
  const char *cmd = k->spec->kernel.cmd ? k->spec->kernel.cmd : DEFAULT_KERNEL_CMD;
  cleanup_free char *copy = xstrdup(cmd);
  const char *cf = KBOX_KERNEL_INNER_DIR "/kernel.json";
  char *save = NULL;
  for (char *tok = strtok_r(copy, " \t\n", &save); tok != NULL; tok = strtok_r(NULL, " \t\n", &save)) {
    /* {kbox_connection_file} is the spelling in kernelspecs (jupyter_client fills in every
       {connection_file} of argv with the client's file, including inside --kernel-cmd). */
    const char *ph = "{kbox_connection_file}";
    char *at = strstr(tok, ph);
    if (at == NULL) at = strstr(tok, ph = "{connection_file}");
    if (at == NULL) {
      kbox_strv_add(&k->spec->sandbox.argv, tok);
      continue;
    }
    char *arg = NULL;
    arg = xasprintf("%.*s%s%s", (int)(at - tok), tok, cf, at + strlen(ph));
    kbox_strv_add_owned(&k->spec->sandbox.argv, arg);
  }
  /* What the client appended (checked by kbox_kernel_args_check). */
  for (size_t i = 0; i < k->spec->kernel.args.n; i++) kbox_strv_add(&k->spec->sandbox.argv, k->spec->kernel.args.v[i]);
}

/* The kernel's environment: no JPY_PARENT_PID (ipykernel would watch a parent that is pid 1). */
static void kernel_env(struct kbox_spec *s) {
  struct kbox_strv kept = {0};
  for (size_t i = 0; i < s->sandbox.env.n; i++)
    if (strncmp(s->sandbox.env.v[i], "JPY_PARENT_PID=", 15) != 0) kbox_strv_add(&kept, s->sandbox.env.v[i]);
  if (kbox_strv_getenv(&kept, "PYDEVD_DISABLE_FILE_VALIDATION") == NULL)
    kbox_strv_setenv(&kept, "PYDEVD_DISABLE_FILE_VALIDATION", "1");
  kbox_strv_free(&s->sandbox.env);
  s->sandbox.env = kept;
}

int kbox_kernel_rundir_only(struct kbox_kernel *k, struct kbox_spec *spec, kbox_error_t *err) {
  k->spec = spec;
  k->run_lock = k->out_fd = -1;
  if (make_rundir(k, err) < 0) return -1;
  kbox_spec_add_bind(spec, k->kdir, KBOX_KERNEL_INNER_DIR, false);
  return 0;
}

int kbox_kernel_prepare(struct kbox_kernel *k, struct kbox_spec *spec, kbox_error_t *err) {
  memset(k, 0, sizeof(*k));
  k->spec = spec;
  k->run_lock = k->out_fd = k->reaper_fd = -1;
  k->started_ms = kbox_now_ms();
  if (make_rundir(k, err) < 0) return -1;
  kbox_trace_step("kernel: run dir and its reaper made");
  if (host_conn(k, err) < 0 || kernel_conn(k, err) < 0) return -1;
  kbox_trace_step("kernel: connection files written");
  kbox_spec_add_bind(spec, k->kdir, KBOX_KERNEL_INNER_DIR, false);
  kernel_argv(k);
  kernel_env(spec);
  /* Our stdout carries the connection JSON only: the kernel's own stdout goes to stderr. */
  fflush(stdout);
  k->out_fd = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (k->out_fd < 0 || dup2(2, 1) < 0) return kbox_error_make(err, errno, "redirecting stdout");
  return 0;
}

int kbox_kernel_open_broker(struct kbox_kernel *k, kbox_error_t *err) {
  const struct kbox_spec *spec = k->spec;
  if (kbox_broker_open(&k->broker, &k->host, &k->kern, spec->kernel.port_lo, spec->kernel.port_hi, spec->kernel.max_message, err) < 0) {
    kbox_broker_close(&k->broker, 0);
    return kbox_error_prefix(err, "kernel broker");
  }
  k->broker_open = true;
  kbox_kreaper_watch_ipc(k->reaper_fd, &k->host);
  return 0;
}

void kbox_kernel_cleanup(struct kbox_kernel *k) {
  if (k->spec == NULL) return;
  if (k->broker_open) kbox_broker_close(&k->broker, 0);
  k->broker_open = false;
  kbox_kreaper_unlink_ipc(&k->host); /* libzmq leaves the socket files of its ipc listeners */
  if (k->conn_written && k->spec->kernel.connection_file != NULL) unlink(k->spec->kernel.connection_file);
  k->conn_written = false;
  if (k->rundir != NULL) kbox_runlock_remove(k->rundir, k->run_lock); /* closes run_lock */
  else if (k->run_lock >= 0) close(k->run_lock);
  free(k->rundir);
  free(k->kdir);
  k->rundir = k->kdir = NULL;
  if (k->out_fd >= 0) {
    dup2(k->out_fd, 1);
    close(k->out_fd);
  }
  if (k->reaper_fd >= 0) close(k->reaper_fd); /* the reaper finds nothing left and exits */
  kbox_kreaper_wait_started();
  k->run_lock = k->out_fd = k->reaper_fd = -1;
}
