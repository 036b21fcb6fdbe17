/* kbox audit show FILE [--id ID] [--since T]: the --audit log for people, one line per record. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/commands.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/log.h"

static void usage(FILE *out) {
  fprintf(out, "Usage: kbox audit show FILE [--id ID] [--since T] [--json]\n"
               "Print an --audit log (JSON Lines) for people: one line per record, code indented below its\n"
               "request. --id keeps one kernel's records; --since keeps records at or after T, an ISO time\n"
               "(2026-12-01T16:00, UTC as written by kbox) or an age (30s, 15m, 2h, 7d). --json prints the\n"
               "kept records unchanged. Lines that are not records are reported with their line number.\n\n"
               "Example: kbox audit show /var/log/kbox/audit.jsonl --since 1h\n");
}

/* --since: an age like 15m becomes an ISO time; an ISO time stays as it is. */
static int since_iso(const char *arg, char *out, size_t n, kbox_error_t *err) {
  char *end = NULL;
  double v = strtod(arg, &end);
  if (end != arg && end[0] != '\0' && end[1] == '\0' && strchr("smhd", end[0])) {
    double mult = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : 86400;
    time_t t = time(NULL) - (time_t)(v * mult);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    return 0;
  }
  if (strlen(arg) < 4 || strlen(arg) >= n || arg[0] < '0' || arg[0] > '9')
    return kbox_error_make(err, 0, "--since: '%s' is neither an ISO time (2026-12-01T16:00) nor an age (15m, 2h)", arg);
  snprintf(out, n, "%s", arg);
  return 0;
}

static const char *s_of(json_t *r, const char *k) {
  const char *s = json_string_value(json_object_get(r, k));
  return s ? s : "";
}

/* The details of one record after "TIME ID EVENT". */
static void details(json_t *r, const char *ev, FILE *out) {
  if (strcmp(ev, "execute_request") == 0) {
    fprintf(out, " msg_id=%s session=%s user=%s sha256=%.16s bytes=%lld%s\n", s_of(r, "msg_id"), s_of(r, "session"),
            s_of(r, "username"), s_of(r, "code_sha256"), (long long)json_integer_value(json_object_get(r, "code_bytes")),
            json_is_true(json_object_get(r, "code_truncated")) ? " (code truncated at the cap)" : "");
    const char *code = s_of(r, "code");
    while (*code) {
      const char *nl = strchr(code, '\n');
      int len = nl ? (int)(nl - code) : (int)strlen(code);
      fprintf(out, "    | %.*s\n", len, code);
      code += len + (nl != NULL);
    }
    return;
  }
  if (strcmp(ev, "execute_outcome") == 0) {
    fprintf(out, " msg_id=%s status=%s", s_of(r, "msg_id"), s_of(r, "status"));
    if (json_object_get(r, "ename")) fprintf(out, " %s: %s", s_of(r, "ename"), s_of(r, "evalue"));
    json_t *d = json_object_get(r, "duration_seconds");
    if (d) fprintf(out, " %.3fs", json_number_value(d));
    fprintf(out, " out=%lldB%s%s\n", (long long)json_integer_value(json_object_get(r, "output_bytes")),
            json_is_true(json_object_get(r, "interrupted")) ? " interrupted" : "",
            json_is_true(json_object_get(r, "timed_out")) ? " timed-out" : "");
    return;
  }
  if (strcmp(ev, "net_blocked") == 0 || strcmp(ev, "net_allowed") == 0) {
    fprintf(out, " %s %s\n", s_of(r, "url"), strcmp(ev, "net_blocked") == 0 ? s_of(r, "reason") : s_of(r, "address"));
    return;
  }
  if (strcmp(ev, "kernel_end") == 0) {
    json_t *v = json_object_get(r, "verdict");
    fprintf(out, " reason=%s exit=%lld oom=%s\n", s_of(v, "reason"), (long long)json_integer_value(json_object_get(v, "exit_code")),
            json_is_true(json_object_get(v, "oom_killed")) ? "yes" : "no");
    return;
  }
  json_t *copy = json_deep_copy(r);
  json_object_del(copy, "time");
  json_object_del(copy, "id");
  json_object_del(copy, "event");
  char *s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
  fprintf(out, " %s\n", s ? s : "");
  free(s);
  json_decref(copy);
}

static int show(const char *path, const char *id, const char *since, bool as_json) {
  cleanup_file FILE *f = fopen(path, "re");
  if (f == NULL) {
    kbox_log(KBOX_LOG_ERROR, "audit show: cannot open %s: %s", path, strerror(errno));
    return 1;
  }
  cleanup_free char *line = NULL;
  size_t cap = 0;
  unsigned long lineno = 0, bad = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 0) {
    lineno++;
    json_t *r = json_loadb(line, (size_t)n, 0, NULL);
    if (!json_is_object(r) || json_object_get(r, "event") == NULL) {
      kbox_log(KBOX_LOG_ERROR, "audit show: %s line %lu is not an audit record", path, lineno);
      bad++;
      json_decref(r);
      continue;
    }
    bool keep = (id == NULL || strcmp(s_of(r, "id"), id) == 0) && (since == NULL || strcmp(s_of(r, "time"), since) >= 0);
    if (keep && as_json) fwrite(line, 1, (size_t)n, stdout);
    else if (keep) {
      printf("%s %s %s", s_of(r, "time"), s_of(r, "id"), s_of(r, "event"));
      details(r, s_of(r, "event"), stdout);
    }
    json_decref(r);
  }
  return bad ? 1 : 0;
}

int kbox_cmd_audit(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? KBOX_EXIT_RUNTIME : 0;
  }
  if (strcmp(argv[1], "show") != 0) {
    kbox_log(KBOX_LOG_ERROR, "audit: unknown subcommand '%s' (see 'kbox audit --help')", argv[1]);
    return KBOX_EXIT_RUNTIME;
  }
  const char *file = NULL, *id = NULL, *since = NULL;
  bool as_json = false;
  char since_buf[64];
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) id = argv[++i];
    else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
      cleanup_error kbox_error_t err = NULL;
      if (since_iso(argv[++i], since_buf, sizeof(since_buf), &err) < 0) return kbox_error_report(&err);
      since = since_buf;
    } else if (strcmp(argv[i], "--json") == 0) as_json = true;
    else if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] != '-' && file == NULL) file = argv[i];
    else {
      kbox_log(KBOX_LOG_ERROR, "audit show: unexpected argument '%s' (see 'kbox audit --help')", argv[i]);
      return KBOX_EXIT_RUNTIME;
    }
  }
  if (file == NULL) {
    usage(stderr);
    return KBOX_EXIT_RUNTIME;
  }
  return show(file, id, since, as_json);
}
