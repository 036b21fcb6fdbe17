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
#include "warm/service.h"
#include "util/clock.h"

#define START_WAIT_MS 120000

static void warm_usage(FILE *out) {
  fprintf(out,
          "Usage: kbox warm start [--image NAME | --rootfs DIR...] [--no-wait]\n"
          "       kbox warm stop\n"
          "       kbox warm status [--json]\n"
          "Kernel-mode sandboxes (kbox run, exec, kernelspec launches) start as forks of a zygote that\n"
          "has already imported the data stack, one per image (see docs/warm.md). The first kernel that\n"
          "finds no zygote starts one in the background; 'start' does it ahead (and waits until it is\n"
          "ready), 'stop' ends every zygote, 'status' lists them. Kernels already started keep running.\n"
          "Environment: KBOX_WARM_DIR (where zygotes keep their sockets; default /run/kbox/warm),\n"
          "KBOX_WARM_IDLE (seconds without a request before a zygote exits; default 900).\n\n"
          "Examples:\n"
          "  kbox warm start && kbox exec -c 'import pandas; pandas.__version__'\n"
          "  kbox warm status --json\n");
}

/* Parse the run options that select the image (argv[0] is the sub-verb). */
static int image_spec(int argc, char **argv, struct kbox_spec *spec, kbox_error_t *err) {
  bool help = false;
  kbox_spec_init(spec);
  if (kbox_run_opts_parse(argc, argv, spec, &help, err) < 0) return -1;
  return kbox_run_opts_finish(spec, err);
}

/* The server of keydir runs (its KEY.pid names a live process). */
static bool server_alive(const char *keydir) {
  char path[PATH_MAX + 8], *text = NULL;
  snprintf(path, sizeof(path), "%s.pid", keydir);
  kbox_error_t err = NULL;
  if (kbox_read_file(path, 64, &text, NULL, &err) < 0) {
    kbox_error_free(&err);
    return false;
  }
  int pid = atoi(text);
  free(text);
  return pid > 0 && kill(pid, 0) == 0;
}

static int warm_start(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  bool wait = true;
  struct kbox_strv args = {0};
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--no-wait") == 0) wait = false;
    else kbox_strv_add(&args, argv[i]);
  }
  struct kbox_spec spec;
  char keydir[PATH_MAX];
  int rc = 0;
  if (image_spec((int)args.n, args.v, &spec, &err) < 0 || kbox_warm_key_dir(&spec, keydir, sizeof(keydir), &err) < 0 ||
      (!kbox_warm_ready(keydir) && kbox_warm_spawn(&spec, &err) < 0)) {
    rc = kbox_error_report(&err);
  } else if (wait) {
    long long until = kbox_now_ms() + START_WAIT_MS;
    long long spawned = kbox_now_ms();
    while (!kbox_warm_ready(keydir) && kbox_now_ms() < until) {
      usleep(50 * 1000);
      if (kbox_now_ms() - spawned > 3000 && !server_alive(keydir)) break; /* it failed: its log says why */
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
  (void)base;
  (void)arg;
  if (pid > 0 && kill(pid, SIGTERM) == 0) kbox_warn("stopping zygote %s (pid %d)", key, pid);
}

static void status_one(const char *base, const char *key, int pid, void *arg) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/%s", base, key);
  json_t *z = json_pack("{s:s,s:i,s:b,s:b}", "key", key, "pid", pid, "alive", pid > 0 && kill(pid, 0) == 0, "ready",
                        kbox_warm_ready(dir));
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
        printf("%s pid %lld %s\n", json_string_value(json_object_get(z, "key")),
               (long long)json_integer_value(json_object_get(z, "pid")),
               json_is_true(json_object_get(z, "ready")) ? "ready" : "starting");
    }
    json_decref(list);
    return rc;
  }
  kbox_log(KBOX_LOG_ERROR, "unknown 'kbox warm %s' (see 'kbox warm --help')", sub);
  return 125;
}
