/* The pool filler, in `kbox warm serve` (docs/warm.md, "The pool"): keeps SIZE holders (each a
   `kbox run` whose kernel is forked from this zygote and started) while their kernels fit in the
   memory budget, one new holder at a time, and ends them all when the server stops or no claim
   came for KBOX_WARM_IDLE seconds. SIZE and the budget are read on every tick from BASE/KEY.pool/
   size and memory (written by `kbox warm start --pool N [--pool-memory MIB]`), else from
   KBOX_WARM_POOL and KBOX_WARM_POOL_MEMORY. */
#include "kernel/state.h"
#include "warm/pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/selfexec.h"
#include "util/parse.h"
#include "util/clock.h"
#include "warm/service.h"

#define DEFAULT_BUDGET_MIB 2048
#define TICK_MS 250
#define STOP_MS 5000


/* A number from DIR/NAME, else from the environment variable, else def. */
static long long setting(const char *dir, const char *name, const char *env, long long def) {
  char path[PATH_MAX], *text = NULL;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  kbox_error_t err = NULL;
  if (kbox_read_file(path, 64, &text, NULL, &err) == 0) {
    long long v = strtoll(text, NULL, 10);
    free(text);
    return v;
  }
  kbox_error_free(&err);
  const char *e = getenv(env);
  return e != NULL && e[0] != '\0' ? strtoll(e, NULL, 10) : def;
}

void kbox_warm_pool_init(struct kbox_warm_pool *p, const struct kbox_spec *spec, const char *keydir) {
  memset(p, 0, sizeof(*p));
  p->spec = spec;
  snprintf(p->keydir, sizeof(p->keydir), "%s", keydir);
  kbox_error_t err = NULL;
  if (kbox_warm_pool_dir(keydir, p->dir, sizeof(p->dir), true, &err) < 0) {
    kbox_warn("warm pool: %s (no pool)", err->msg);
    kbox_error_free(&err);
    p->dir[0] = '\0';
  }
  const char *idle = getenv("KBOX_WARM_IDLE");
  p->idle_ms = 1000LL * (idle != NULL ? strtoll(idle, NULL, 10) : 900);
  if (p->dir[0] != '\0') kbox_warm_pool_touch(p->dir);
}

/* Milliseconds since the pool was last wanted (kbox_warm_pool_touch). */
static long long unwanted_ms(const char *dir) {
  char path[PATH_MAX];
  struct stat st;
  struct timespec now;
  snprintf(path, sizeof(path), "%s/wanted", dir);
  if (stat(path, &st) < 0) return 0;
  clock_gettime(CLOCK_REALTIME, &now);
  return (now.tv_sec - st.st_mtim.tv_sec) * 1000LL + (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;
}

/* Memory of the ready pool kernels (their holders write it beside their slots). */
static long long pool_memory(const char *dir) {
  long long sum = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t l = strlen(e->d_name);
    if (l < 5 || strcmp(e->d_name + l - 4, ".mem") != 0) continue;
    char path[PATH_MAX], *text = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    kbox_error_t err = NULL;
    if (kbox_read_file(path, 64, &text, NULL, &err) == 0) {
      long long v = strtoll(text, NULL, 10);
      sum += v > 0 ? v : 0;
      free(text);
    }
    kbox_error_free(&err);
  }
  closedir(d);
  return sum;
}

/* Start one holder: `kbox run --rootfs ... --id kpool-HEX` with its slot in the environment; it
   ends with us (parent-death signal), and a holder whose kernel was claimed exits by itself. */
static pid_t spawn_holder(struct kbox_warm_pool *p, char *id, size_t idlen) {
  char hex[17], slot[PATH_MAX];
  kbox_error_t err = NULL;
  if (kbox_random_hex(hex, 8, &err) < 0) {
    kbox_warn("warm pool: %s", err->msg);
    kbox_error_free(&err);
    return -1;
  }
  snprintf(id, idlen, KBOX_POOL_ID_PREFIX "%s", hex);
  snprintf(slot, sizeof(slot), "%s/%s.sock", p->dir, id);
  struct kbox_strv argv = {0};
  kbox_strv_add(&argv, "kbox");
  kbox_strv_add(&argv, "run");
  for (size_t i = 0; i < p->spec->sandbox.rootfs.n; i++) {
    kbox_strv_add(&argv, "--rootfs");
    kbox_strv_add(&argv, p->spec->sandbox.rootfs.v[i]);
  }
  kbox_strv_add(&argv, "--id");
  kbox_strv_add(&argv, id);
  kbox_strv_add(&argv, "--env");
  kbox_strv_add(&argv, KBOX_WARM_POOL_KERNEL_ENV "=1");
  /* stderr stays the server's log */
  struct kbox_selfexec o = {.keep_stderr = true, .death_signal = SIGTERM, .env_name = KBOX_WARM_POOL_SLOT_ENV, .env_value = slot};
  pid_t pid = kbox_selfexec(argv.v, &o, &err);
  kbox_strv_free(&argv);
  if (pid < 0) {
    kbox_warn("warm pool: starting a holder: %s", err->msg);
    kbox_error_free(&err);
  }
  return pid;
}

/* Remove what a holder that ended may have left of its slot (SIGKILLed, it could not). */
static void clear_slot(const struct kbox_warm_pool *p, const char *id) {
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s.sock", p->dir, id);
  unlink(path);
  snprintf(path, sizeof(path), "%s/%s.sock.tmp", p->dir, id);
  unlink(path);
  snprintf(path, sizeof(path), "%s/%s.mem", p->dir, id);
  unlink(path);
}

/* Forget holders that ended. */
static void reap(struct kbox_warm_pool *p) {
  for (int i = 0; i < p->n;) {
    int st = 0;
    pid_t r = waitpid(p->holders[i], &st, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) {
      i++;
      continue;
    }
    if (p->holders[i] == p->starting) p->starting = 0;
    clear_slot(p, p->ids[i]);
    p->n--;
    p->holders[i] = p->holders[p->n];
    p->ending[i] = p->ending[p->n];
    memcpy(p->ids[i], p->ids[p->n], sizeof(p->ids[i]));
  }
}

/* Slots ready now. */
static int ready_slots(const char *dir) {
  int n = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t l = strlen(e->d_name);
    n += l > 5 && strcmp(e->d_name + l - 5, ".sock") == 0;
  }
  closedir(d);
  return n;
}

int kbox_warm_pool_tick(struct kbox_warm_pool *p) {
  if (p->dir[0] == '\0') return -1;
  reap(p);
  long long size = setting(p->dir, "size", "KBOX_WARM_POOL", 0);
  long long budget = setting(p->dir, "memory", "KBOX_WARM_POOL_MEMORY", DEFAULT_BUDGET_MIB) << 20;
  if (size > KBOX_WARM_POOL_MAX) size = KBOX_WARM_POOL_MAX;
  if (unwanted_ms(p->dir) > p->idle_ms) size = 0; /* idle: let the zygote idle out too */
  int live = 0;
  for (int i = 0; i < p->n; i++) live += !p->ending[i];
  for (int i = p->n - 1; i >= 0 && live > size; i--) /* shrink: the newest first */
    if (!p->ending[i]) {
      kill(p->holders[i], SIGTERM);
      p->ending[i] = true;
      live--;
      if (p->holders[i] == p->starting) p->starting = 0;
    }
  int ready = ready_slots(p->dir);
  if (p->starting != 0 && ready >= live) p->starting = 0; /* the last one is ready */
  if (p->starting == 0 && live < size && p->n < KBOX_WARM_POOL_MAX && kbox_warm_ready(p->keydir)) {
    long long used = pool_memory(p->dir), each = used / (ready > 0 ? ready : 1);
    if (used + each <= budget) {
      pid_t h = spawn_holder(p, p->ids[p->n], sizeof(p->ids[p->n]));
      if (h > 0) {
        p->ending[p->n] = false;
        p->holders[p->n++] = p->starting = h;
      }
    } else {
      kbox_debug("warm pool: %d kernels use %lld MiB of a %lld MiB budget: not adding one", ready, used >> 20, budget >> 20);
    }
  }
  return size > 0 || p->n > 0 ? TICK_MS : 1000;
}

void kbox_warm_pool_stop(struct kbox_warm_pool *p) {
  for (int i = 0; i < p->n; i++) kill(p->holders[i], SIGTERM);
  long long until = kbox_now_ms() + STOP_MS;
  while (p->n > 0 && kbox_now_ms() < until) {
    reap(p);
    usleep(20 * 1000);
  }
  for (int i = 0; i < p->n; i++) kill(p->holders[i], SIGKILL);
  while (p->n > 0) {
    int st;
    if (waitpid(p->holders[p->n - 1], &st, 0) >= 0 || errno != EINTR) clear_slot(p, p->ids[--p->n]);
  }
  if (p->dir[0] != '\0') {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/size", p->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/memory", p->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/wanted", p->dir);
    unlink(path);
    rmdir(p->dir);
  }
}

void kbox_warm_pool_count(const char *keydir, int *ready, int *size) {
  char dir[PATH_MAX];
  kbox_error_t err = NULL;
  *ready = *size = 0;
  if (kbox_warm_pool_dir(keydir, dir, sizeof(dir), false, &err) < 0) {
    kbox_error_free(&err);
    return;
  }
  *ready = ready_slots(dir);
  *size = (int)setting(dir, "size", "KBOX_WARM_POOL", 0);
}
