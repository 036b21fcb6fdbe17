/* kbox ps / kbox inspect: the kernels started with an id, from their state directories. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "kernel/state.h"
#include "util/cleanup.h"
#include "util/parse.h"

/* "1.5G", "230M", "12K" or "-". */
static void human_size(json_t *v, char *buf, size_t n) {
  if (!json_is_integer(v) || json_integer_value(v) <= 0) {
    snprintf(buf, n, "-");
    return;
  }
  double x = (double)json_integer_value(v);
  const char *units = "BKMGT";
  int u = 0;
  while (x >= 1024 && u < 4) x /= 1024, u++;
  snprintf(buf, n, u == 0 ? "%.0f%c" : "%.3g%c", x, units[u]);
}

static void human_age(json_t *v, char *buf, size_t n) {
  if (!json_is_integer(v)) {
    snprintf(buf, n, "-");
    return;
  }
  long long s = json_integer_value(v);
  if (s < 120) snprintf(buf, n, "%llds", s);
  else if (s < 7200) snprintf(buf, n, "%lldm", s / 60);
  else if (s < 172800) snprintf(buf, n, "%lldh", s / 3600);
  else snprintf(buf, n, "%lldd", s / 86400);
}

int kbox_cmd_ps(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  bool as_json = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) as_json = true;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("Usage: kbox ps [--json]\nList the kernels started with 'kbox run --id ID' (e.g. --detach): id, status\n"
             "(starting, idle, busy = a kbox exec --id is running, stopped = its supervisor is stopped (SIGSTOP),\n"
             "dead = its supervisor is gone), age, memory in\n"
             "use, memory limit, supervisor pid. --json prints an array of the objects 'kbox inspect' shows.\n");
      return 0;
    } else {
      char q[256];
      kbox_error_make(&err, 0, "unknown argument '%s' (see 'kbox ps --help')", kbox_quote(argv[i], q, sizeof(q)));
      return kbox_error_report(&err);
    }
  }
  struct kbox_state *v = NULL;
  size_t n = 0;
  kbox_state_sweep(); /* a kbox killed together with its reaper: no phantom "dead" kernel */
  if (kbox_state_list(&v, &n, &err) < 0) return kbox_error_report(&err);
  json_t *all = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(all, kbox_state_json(&v[i]));
  free(v);
  if (as_json) {
    char *s = json_dumps(all, JSON_INDENT(2));
    if (s != NULL) puts(s);
    free(s);
  } else {
    printf("%-24s %-9s %-6s %-8s %-8s %s\n", "ID", "STATUS", "AGE", "MEMORY", "LIMIT", "PID");
    size_t i;
    json_t *k;
    json_array_foreach(all, i, k) {
      char age[32], mem[32], lim[32], pid[32];
      human_age(json_object_get(k, "age_seconds"), age, sizeof(age));
      human_size(json_object_get(k, "memory_bytes"), mem, sizeof(mem));
      human_size(json_object_get(json_object_get(k, "limits"), "memory"), lim, sizeof(lim));
      json_t *p = json_object_get(k, "pid");
      snprintf(pid, sizeof(pid), json_is_integer(p) ? "%lld" : "-", (long long)json_integer_value(p));
      printf("%-24s %-9s %-6s %-8s %-8s %s\n", json_string_value(json_object_get(k, "id")),
             json_string_value(json_object_get(k, "status")), age, mem, lim, pid);
    }
  }
  json_decref(all);
  return 0;
}

int kbox_cmd_inspect(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("Usage: kbox inspect ID\nPrint the state of kernel ID as JSON: status, pids, age, memory, limits, options,\n"
           "connection file, state directory.\n");
    return 0;
  }
  if (argc != 2) {
    kbox_error_make(&err, 0, "usage: kbox inspect ID");
    return kbox_error_report(&err);
  }
  struct kbox_state st;
  if (kbox_state_read(argv[1], &st, &err) < 0) return kbox_error_report(&err);
  json_t *j = kbox_state_json(&st);
  char *s = json_dumps(j, JSON_INDENT(2));
  if (s != NULL) puts(s);
  free(s);
  json_decref(j);
  return 0;
}
