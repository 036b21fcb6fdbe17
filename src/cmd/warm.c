/* kbox warm: the zygotes that make warm kernels (docs/warm.md). */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run_opts.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "warm/pool.h"
#include "warm/service.h"
#include "util/clock.h"

#define START_WAIT_MS 120000

static void warm_usage(FILE *out) {
  fprintf(out,
          "Usage: kbox warm start [--image NAME | --rootfs DIR...] [--no-wait] [--pool N] [--pool-memory MIB]\n"
          "       kbox warm stop\n"
          "       kbox warm status [--json]\n"
          "Kernel-mode sandboxes (kbox run, exec, kernelspec launches) start as forks of a zygote that\n"
          "has already imported the data stack, one per image (see docs/warm.md). The first kernel that\n"
          "finds no zygote starts one in the background; 'start' does it ahead (and waits until it is\n"
          "ready), 'stop' ends every zygote, 'status' lists them. Kernels already started keep running.\n"
          "Environment: KBOX_WARM_DIR (where zygotes keep their sockets; default /run/kbox/warm, rootless\n"
          "$XDG_RUNTIME_DIR/kbox/warm or /tmp/kbox-UID/warm),\n"
          "KBOX_WARM_IDLE (seconds without a request before a zygote exits; default 900).\n"
          "The pool: --pool N keeps N kernels of the image forked and started ahead, claimed in a few\n"
          "milliseconds by kernels whose settings match (docs/warm.md); --pool-memory caps their memory\n"
          "(MiB, default 2048). Both apply to a running zygote too; KBOX_WARM_POOL and\n"
          "KBOX_WARM_POOL_MEMORY are the defaults of a zygote started on demand (default: no pool).\n\n"
          "Examples:\n"
          "  kbox warm start && kbox exec -c 'import pandas; pandas.__version__'\n"
          "  kbox warm start --pool 2 && kbox exec -c 1\n"
          "  kbox warm status --json\n");
}

/* Parse the run options that select the image (argv[0] is the sub-verb). */
static int image_spec(int argc, char **argv, struct kbox_spec *spec, kbox_error_t *err) {
  bool help = false;
  kbox_spec_init(spec);
  if (kbox_run_opts_parse(argc, argv, spec, &help, err) < 0) return -1;
  return kbox_run_opts_finish(spec, err);
}

/* `start --pool N [--pool-memory MIB]`: the pool's size and budget, read by the zygote's server on
   its next tick (src/warm/pool_fill.c). */
static int set_pool(const char *keydir, const char *size, const char *memory, kbox_error_t *err) {
  char dir[PATH_MAX], path[PATH_MAX + 16], text[32];
  if (kbox_warm_pool_dir(keydir, dir, sizeof(dir), true, err) < 0) return -1;
  const char *names[2] = {"size", "memory"}, *values[2] = {size, memory};
  for (int i = 0; i < 2; i++) {
    if (values[i] == NULL) continue;
    char *end = NULL;
    long long v = strtoll(values[i], &end, 10);
    if (end == values[i] || *end != '\0' || v < 0 || (i == 0 && v > KBOX_WARM_POOL_MAX))
      return kbox_error_make(err, 0, "--pool%s %s: give a number%s", i ? "-memory" : "", values[i],
                             i ? " of MiB" : " from 0 to 64");
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    snprintf(text, sizeof(text), "%lld\n", v);
    if (kbox_warm_pool_put(path, text, err) < 0) return -1;
  }
  kbox_warm_pool_touch(dir);
  return 0;
}

static int warm_start(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  bool wait = true;
  struct kbox_strv args = {0};
  const char *pool = NULL, *pool_memory = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--no-wait") == 0) wait = false;
    else if (strcmp(argv[i], "--pool") == 0 && i + 1 < argc) pool = argv[++i];
    else if (strcmp(argv[i], "--pool-memory") == 0 && i + 1 < argc) pool_memory = argv[++i];
    else kbox_strv_add(&args, argv[i]);
  }
  struct kbox_spec spec;
  char keydir[PATH_MAX];
  int rc = 0;
  if ((pool != NULL || pool_memory != NULL) && geteuid() != 0) { /* docs/warm.md, "Rootless warm starts" */
    kbox_warn("rootless zygotes keep no pool (a claim enters a pool kernel as root): --pool ignored, kernels fork");
    pool = pool_memory = NULL;
  }
  if (image_spec((int)args.n, args.v, &spec, &err) < 0 || kbox_warm_key_dir(&spec, keydir, sizeof(keydir), &err) < 0 ||
      ((pool != NULL || pool_memory != NULL) && set_pool(keydir, pool, pool_memory, &err) < 0) ||
      (!kbox_warm_ready(keydir) && kbox_warm_spawn(&spec, &err) < 0)) {
    rc = kbox_error_report(&err);
  } else if (wait) {
    long long until = kbox_now_ms() + START_WAIT_MS;
    long long spawned = kbox_now_ms();
    int spawns = 1;
    while (!kbox_warm_ready(keydir) && kbox_now_ms() < until) {
      usleep(20 * 1000);
      if (kbox_now_ms() - spawned < 1000 || kbox_warm_serving(keydir)) continue;
      /* No server: ours lost a race to one that has ended since (a `kbox warm stop` a moment
         ago), or it failed (its log says why). Start another, a few times at most. */
      if (spawns++ == 3 || kbox_warm_spawn(&spec, &err) < 0) break;
      spawned = kbox_now_ms();
    }
    if (!kbox_warm_ready(keydir)) {
      kbox_log(KBOX_LOG_ERROR, "the zygote did not become ready within %d s (see %s.log)", START_WAIT_MS / 1000, keydir);
      rc = 125;
    } else {
      printf("%s\n", keydir);
    }
  }
  kbox_spec_free(&spec);
  kbox_strv_free(&args);
  return rc;
}

/* Every KEY.pid in the base dir: call fn(key, pid). */
static int each_zygote(void (*fn)(const char *base, const char *key, int pid, void *arg), void *arg) {
  char base[PATH_MAX - 300];
  kbox_error_t err = NULL;
  if (kbox_warm_base(base, sizeof(base), &err) < 0) return kbox_error_report(&err);
  DIR *d = opendir(base);
  if (d == NULL) return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    size_t n = strlen(e->d_name);
    if (n < 5 || strcmp(e->d_name + n - 4, ".pid") != 0) continue;
    char path[PATH_MAX], key[256], *text = NULL;
    snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
    snprintf(key, sizeof(key), "%.*s", (int)(n - 4), e->d_name);
    if (kbox_read_file(path, 64, &text, NULL, &err) < 0) {
      kbox_error_free(&err);
      continue;
    }
    fn(base, key, atoi(text), arg);
    free(text);
  }
  closedir(d);
  return 0;
}

static void stop_one(const char *base, const char *key, int pid, void *arg) {
  (void)arg;
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/%s", base, key);
  if (!kbox_warm_serving(dir)) return; /* a dead server's pid file: the pid may be another process's now */
  if (pid > 0 && kill(pid, SIGTERM) == 0) kbox_warn("stopping zygote %s (pid %d)", key, pid);
}

/* One zygote's entry: its server runs (it holds the key's lock) and the zygote is "starting"
   (importing) or "ready" (its socket accepts); a pid file no live server holds is "dead". */
static void status_one(const char *base, const char *key, int pid, void *arg) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/%s", base, key);
  int pool_ready = 0, pool_size = 0;
  kbox_warm_pool_count(dir, &pool_ready, &pool_size);
  bool alive = kbox_warm_serving(dir), ready = alive && kbox_warm_ready(dir);
  json_t *z = json_pack("{s:s,s:i,s:b,s:b,s:s,s:{s:i,s:i}}", "key", key, "pid", pid, "alive", alive, "ready", ready, "state",
                        ready ? "ready" : alive ? "starting" : "dead", "pool", "size", pool_size, "ready", pool_ready);
  json_array_append_new(arg, z);
}

int kbox_cmd_warm(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    warm_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 125 : 0;
  }
  const char *sub = argv[1];
  if (strcmp(sub, "start") == 0) return warm_start(argc - 1, argv + 1);
  if (strcmp(sub, "serve") == 0) { /* internal: started by kbox_warm_spawn */
    cleanup_error kbox_error_t err = NULL;
    struct kbox_spec spec;
    int rc = image_spec(argc - 1, argv + 1, &spec, &err) < 0 || kbox_warm_serve(&spec, &err) < 0 ? kbox_error_report(&err) : 0;
    kbox_spec_free(&spec);
    return rc;
  }
  if (strcmp(sub, "stop") == 0) return each_zygote(stop_one, NULL);
  if (strcmp(sub, "status") == 0) {
    json_t *list = json_array();
    int rc = each_zygote(status_one, list);
    bool as_json = argc > 2 && strcmp(argv[2], "--json") == 0;
    if (as_json) {
      char *s = json_dumps(list, JSON_COMPACT);
      printf("%s\n", s);
      free(s);
    } else {
      size_t i;
      json_t *z;
      json_array_foreach(list, i, z)
        printf("%s pid %lld %s, pool %lld/%lld\n", json_string_value(json_object_get(z, "key")),
               (long long)json_integer_value(json_object_get(z, "pid")), json_string_value(json_object_get(z, "state")),
               (long long)json_integer_value(json_object_get(json_object_get(z, "pool"), "ready")),
               (long long)json_integer_value(json_object_get(json_object_get(z, "pool"), "size")));
    }
    json_decref(list);
    return rc;
  }
  kbox_log(KBOX_LOG_ERROR, "unknown 'kbox warm %s' (see 'kbox warm --help')", sub);
  return 125;
}
