/* kbox exec: run code in a sandboxed kernel and print one PyBoxOut-shaped JSON object.
   One-shot mode starts `kbox run` (kernel mode) as a child process (kernel/runchild.c): the
   sandbox, broker and supervision stay in one tested place, the child's --report gives the
   verdict, and a crash of either side cannot corrupt the other. --id uses a detached kernel's state instead. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/run_opts.h"
#include "kernel/client.h"
#include "kernel/runchild.h"
#include "kernel/state.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/parse.h"
#include "util/proc.h"
#include "util/strv.h"

enum {
  EXEC_OK = 0,
  EXEC_RAISED = 1,
  EXEC_DIED = 2,     /* the kernel died during execution (not out of memory) */
  EXEC_OOM = 3,      /* the kernel was killed for exceeding --memory */
  EXEC_TIMEOUT = 124,
  EXEC_FAILURE = KBOX_RUN_CHILD_FAILED, /* bad options, the sandbox or kernel did not start, unknown id */
};

#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_MAX_OUTPUT (4u << 20)
#define GRACE_MS 5000
#define START_MS 90000
#define MAX_CODE (16u << 20) /* one cell read from FILE or standard input */
#define STDIN_MS 300000      /* standard input must end (EOF) within 5 minutes */

struct exec_opts {
  struct kbox_strv cells;
  struct kbox_strv run_args;
  const char *id;
  long long timeout_ms;
  uint64_t max_output;
  bool text;
};

static void exec_usage(FILE *out) {
  fprintf(out,
          "Usage: kbox exec [RUN OPTIONS] [EXEC OPTIONS] (-c CODE ... | FILE | -)\n"
          "       kbox exec --id ID [EXEC OPTIONS] (-c CODE ... | FILE | -)\n"
          "Run Python code in a sandboxed Jupyter kernel and print ONE JSON object:\n"
          "  {\"data\": [MIME bundles...], \"error\": null | {\"ename\", \"evalue\", \"traceback\"},\n"
          "   \"status\": \"ok|error|timeout|oom|died|sandbox_error\", \"timed_out\": bool, \"truncated\": bool,\n"
          "   \"report\": {sandbox verdict (one-shot) or kernel state (--id)}}\n"
          "Without --id a fresh kernel is started with the run options (see 'kbox run --help') and torn\n"
          "down afterwards. With --id ID the code runs in the kernel started by 'kbox run --id ID --detach'\n"
          "(state is kept between calls; concurrent calls on one kernel wait for each other).\n\n"
          "Exec options:\n"
          "  -c CODE              a cell of code; repeat for more cells (run in order, stop at the first error)\n"
          "  FILE | -             read one cell from FILE or standard input\n"
          "  --id ID              run in the detached kernel ID\n"
          "  --timeout SECONDS    per cell: interrupt it after this long (default 60)\n"
          "  --max-output SIZE    keep at most SIZE bytes of output, then a truncation marker (default 4M)\n"
          "  --text               print a human-readable rendering instead of JSON\n\n"
          "Exit status: 0 ran without error, 1 the code raised, 2 the kernel died, 3 out of memory,\n"
          "124 a cell timed out, 125 kbox or the sandbox failed (bad option, kernel did not start, unknown id).\n\n"
          "Examples:\n"
          "  kbox exec -c 'import math; math.sqrt(16)'\n"
          "  kbox exec --memory 512M --timeout 10 analysis.py\n"
          "  kbox run --id s1 --detach >/dev/null && kbox exec --id s1 -c 'x = 41' && kbox exec --id s1 -c 'x + 1'\n");
}

/* FILE or - (standard input, which may be a pipe) as one cell, at most MAX_CODE bytes, standard input
   ending within STDIN_MS. A FILE must be a regular file: a FIFO or device (/dev/zero) is refused
   before it is read. */
static int add_file_cell(struct exec_opts *o, const char *path, kbox_error_t *err) {
  bool in = strcmp(path, "-") == 0;
  cleanup_close int fd = in ? dup(0) : kbox_open_regular(path, err);
  if (fd < 0) return in ? kbox_error_make(err, errno, "reading code from standard input") : kbox_error_prefix(err, "code FILE");
  char *text = NULL;
  size_t len = 0;
  if (kbox_read_fd_within(fd, in ? "the code on standard input" : path, MAX_CODE, in ? STDIN_MS : 0, &text, &len, err) < 0)
    return kbox_error_hint(err, "give the code in smaller cells, or as a FILE");
  if (memchr(text, '\0', len) != NULL) {
    free(text);
    return kbox_error_make(err, 0, "%s contains a NUL byte: not Python source", in ? "standard input" : path);
  }
  kbox_strv_add_owned(&o->cells, text);
  return 0;
}

/* Value of an option given as "--name VALUE" or "--name=VALUE"; NULL when arg is not --name. */
static const char *opt_value(const char *name, int argc, char **argv, int *i, bool *missing) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return NULL;
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  if (argv[*i][n] != '\0') return NULL;
  if (*i + 1 >= argc) {
    *missing = true;
    return NULL;
  }
  return argv[++*i];
}

/* Split argv into exec's own options and the run options passed on to `kbox run`. */
static int parse(int argc, char **argv, struct exec_opts *o, bool *help, kbox_error_t *err) {
  o->timeout_ms = DEFAULT_TIMEOUT_MS;
  o->max_output = DEFAULT_MAX_OUTPUT;
  const char *file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    char q[256], q2[256];
    bool missing = false;
    uint64_t u;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      *help = true;
      return 0;
    } else if (strcmp(a, "-c") == 0) {
      if (i + 1 >= argc) return kbox_error_make(err, 0, "-c needs the code to run (see 'kbox exec --help')");
      kbox_strv_add(&o->cells, argv[++i]);
    } else if (strcmp(a, "--text") == 0) {
      o->text = true;
    } else if ((v = opt_value("--id", argc, argv, &i, &missing)) != NULL) {
      if (kbox_validate_id("--id", v, err) < 0) return -1;
      o->id = v;
    } else if ((v = opt_value("--timeout", argc, argv, &i, &missing)) != NULL) {
      if (kbox_parse_seconds("--timeout", v, &u, err) < 0) return -1;
      o->timeout_ms = (long long)u;
    } else if ((v = opt_value("--max-output", argc, argv, &i, &missing)) != NULL) {
      if (kbox_parse_size("--max-output", v, &o->max_output, err) < 0) return -1;
    } else if (missing) {
      return kbox_error_make(err, 0, "option '%s' needs a value (see 'kbox exec --help')", kbox_quote(a, q, sizeof(q)));
    } else if (strcmp(a, "-") == 0 || a[0] != '-') {
      if (file != NULL)
        return kbox_error_make(err, 0, "more than one FILE given ('%s' and '%s'); use -c for more cells",
                               kbox_quote(file, q, sizeof(q)), kbox_quote(a, q2, sizeof(q2)));
      file = a;
    } else if (strcmp(a, "--") == 0) {
      if (i + 1 < argc) file = argv[++i];
    } else if (strncmp(a, "--", 2) == 0) {
      char name[64];
      snprintf(name, sizeof(name), "%.*s", (int)strcspn(a + 2, "="), a + 2);
      int takes = kbox_run_opts_takes_arg(name);
      if (takes < 0)
        return kbox_error_make(err, 0, "unknown option '%s' (see 'kbox exec --help' and 'kbox run --help')", kbox_quote(a, q, sizeof(q)));
      if (strcmp(name, "detach") == 0 || strcmp(name, "report") == 0 || strcmp(name, "connection-file") == 0)
        return kbox_error_make(err, 0, "%s cannot be used with kbox exec (the verdict is in its JSON; for a kernel that "
                               "stays, use 'kbox run --id ID --detach' and 'kbox exec --id ID')", a);
      kbox_strv_add(&o->run_args, a);
      if (takes == 1 && strchr(a, '=') == NULL) {
        if (i + 1 >= argc) return kbox_error_make(err, 0, "option '%s' needs a value (see 'kbox run --help')", kbox_quote(a, q, sizeof(q)));
        kbox_strv_add(&o->run_args, argv[++i]);
      }
    } else {
      return kbox_error_make(err, 0, "unknown option '%s' (see 'kbox exec --help')", kbox_quote(a, q, sizeof(q)));
    }
  }
  if (file != NULL && add_file_cell(o, file, err) < 0) return -1;
  if (o->cells.n == 0) return kbox_error_make(err, 0, "no code given: use -c CODE, a FILE, or - for standard input");
  if (o->id != NULL && o->run_args.n > 0)
    return kbox_error_make(err, 0, "run options (%s...) apply when a kernel starts: give them to 'kbox run --id %s --detach'",
                           o->run_args.v[0], o->id);
  return 0;
}

/* Run every cell; returns the end of the last one run. */
static enum kbox_exec_end run_cells(struct exec_opts *o, struct kbox_client *c, int gone_fd, struct kbox_pyboxout *out) {
  enum kbox_exec_end end = KBOX_EXEC_OK;
  for (size_t i = 0; i < o->cells.n && end == KBOX_EXEC_OK; i++)
    end = kbox_client_execute(c, o->cells.v[i], o->timeout_ms, GRACE_MS, gone_fd, out);
  return end;
}

/* The cell raised: its own exception, or the supervisor's answer for a kernel that died running it
   (kernel/pending.c: the ename names the sandbox limit that ended it). */
static int raised(struct kbox_pyboxout *out, const char **status) {
  const char *ename = json_string_value(json_object_get(out->error, "ename"));
  *status = "error";
  if (ename == NULL) return EXEC_RAISED;
  if (strcmp(ename, "SandboxMemoryLimit") == 0) {
    *status = "oom";
    return EXEC_OOM;
  }
  if (strcmp(ename, "SandboxTimeout") == 0) {
    *status = "timeout";
    out->timed_out = true;
    return EXEC_TIMEOUT;
  }
  if (strcmp(ename, "SandboxProcessLimit") == 0 || strcmp(ename, "KernelDied") == 0 || strcmp(ename, "KernelShutdown") == 0) {
    *status = "died";
    return EXEC_DIED;
  }
  return EXEC_RAISED;
}

/* Status word, exit code and kbox-made error for how the execution ended. */
static int outcome(struct exec_opts *o, enum kbox_exec_end end, bool oom, bool detached, struct kbox_pyboxout *out,
                   const char **status) {
  char msg[512];
  switch (end) {
  case KBOX_EXEC_OK: *status = "ok"; return EXEC_OK;
  case KBOX_EXEC_RAISED: return raised(out, status);
  case KBOX_EXEC_TIMEOUT:
    *status = "timeout";
    if (out->error == NULL) {
      snprintf(msg, sizeof(msg), "the cell ran past --timeout %.3gs and was interrupted", (double)o->timeout_ms / 1000.0);
      kbox_pyboxout_set_kbox_error(out, "TimeoutError", msg);
    }
    return EXEC_TIMEOUT;
  case KBOX_EXEC_STUCK:
    *status = "timeout";
    snprintf(msg, sizeof(msg), "the cell ran past --timeout %.3gs and ignored the interrupt for %d s; %s",
             (double)o->timeout_ms / 1000.0, GRACE_MS / 1000,
             detached ? "the kernel is still busy (kbox interrupt / kbox kill)" : "the kernel was killed");
    kbox_pyboxout_set_kbox_error(out, "TimeoutError", msg);
    return EXEC_TIMEOUT;
  case KBOX_EXEC_GONE:
    *status = oom ? "oom" : "died";
    kbox_pyboxout_set_kbox_error(out, oom ? "SandboxMemoryLimit" : "KernelDied",
                                 oom ? "the kernel was killed: its sandbox ran out of memory (raise --memory)"
                                     : "the kernel died during execution (see the report)");
    return oom ? EXEC_OOM : EXEC_DIED;
  case KBOX_EXEC_FAILED: break;
  }
  *status = "sandbox_error";
  kbox_pyboxout_set_kbox_error(out, "SandboxError", "lost the connection to the kernel");
  return EXEC_FAILURE;
}

/* Print the result (JSON or --text) and return code. */
static int emit(struct exec_opts *o, struct kbox_pyboxout *out, const char *status, json_t *report, int code) {
  json_t *r = kbox_pyboxout_json(out);
  json_object_set_new(r, "status", json_string(status));
  json_object_set_new(r, "timed_out", json_boolean(out->timed_out));
  json_object_set_new(r, "report", report ? report : json_null());
  if (o->text) {
    kbox_pyboxout_render_text(r, stdout);
  } else {
    char *s = json_dumps(r, JSON_COMPACT);
    if (s != NULL) puts(s);
    free(s);
  }
  fflush(stdout);
  json_decref(r);
  return code;
}

static int exec_oneshot(struct exec_opts *o) {
  cleanup_error kbox_error_t err = NULL;
  struct kbox_run_child ch;
  kbox_run_child_init(&ch);
  struct kbox_conn conn;
  struct kbox_client c = {0};
  struct kbox_pyboxout out;
  kbox_pyboxout_init(&out, o->max_output);
  const char *status = "sandbox_error";
  int code = EXEC_FAILURE;
  enum kbox_exec_end end = KBOX_EXEC_FAILED;
  if (kbox_run_child_start(&ch, &o->run_args, START_MS, &conn, &err) < 0 || kbox_client_open(&c, &conn, &err) < 0 ||
      kbox_client_wait_ready(&c, 30000, ch.pidfd, &err) < 0) {
    kbox_pyboxout_set_kbox_error(&out, "SandboxError", err->msg);
  } else {
    end = run_cells(o, &c, ch.pidfd, &out);
  }
  kbox_client_close(&c);
  kbox_run_child_stop(&ch);
  json_t *report = kbox_run_child_report(&ch);
  bool oom = json_is_true(json_object_get(report, "oom_killed"));
  if (err == NULL) code = outcome(o, end, oom, false, &out, &status);
  if (code == EXEC_DIED || code == EXEC_OOM || code == EXEC_FAILURE) kbox_run_child_show_stderr(&ch);
  code = emit(o, &out, status, report, code);
  kbox_pyboxout_free(&out);
  kbox_run_child_close(&ch);
  return code;
}

/* The error of a kernel whose supervisor is stopped: nothing it brokers can move until it resumes. */
static int stopped_error(const struct kbox_state *st, kbox_error_t *err) {
  return kbox_error_make(err, 0, "kernel '%s' cannot answer: its supervisor (pid %d) is stopped (SIGSTOP?); resume it "
                         "with 'kill -CONT %d', or 'kbox kill %s'", st->id, (int)st->pid, (int)st->pid, st->id);
}

/* After the kernel went away during a cell: was it out of memory? Its supervisor left the verdict. */
#define GONE_WAIT_MS 10000 /* how long a supervisor that answered for its dead kernel takes to leave */

static json_t *gone_verdict(struct exec_opts *o, const struct kbox_state *st, bool *oom) {
  json_t *v = st->pid > 0 ? kbox_state_take_verdict(o->id, st->pid) : NULL;
  *oom = json_is_true(json_object_get(v, "oom_killed"));
  return v;
}

/* The error is the supervisor's answer for a kernel that died running the cell (kernel/pending.c). */
static bool kernel_died(const struct kbox_pyboxout *out) {
  static const char *const names[] = {"SandboxMemoryLimit", "SandboxTimeout", "SandboxProcessLimit", "KernelDied",
                                      "KernelShutdown", NULL};
  const char *ename = json_string_value(json_object_get(out->error, "ename"));
  for (int i = 0; ename != NULL && names[i] != NULL; i++)
    if (strcmp(ename, names[i]) == 0) return true;
  return false;
}

/* Wait up to ms for the supervisor (its pidfd) to exit; true when it did. */
static bool wait_gone(int gone_fd, int ms) {
  struct pollfd p = {.fd = gone_fd, .events = POLLIN};
  return gone_fd >= 0 && poll(&p, 1, ms) > 0;
}

static int exec_in(struct exec_opts *o) {
  cleanup_error kbox_error_t err = NULL;
  struct kbox_state st;
  if (kbox_state_read(o->id, &st, &err) < 0) return kbox_error_report(&err);
  if (!st.alive) {
    kbox_error_make(&err, 0, "kernel '%s' is dead (its supervisor is gone): 'kbox kill %s' removes its state, "
                    "'kbox run --id %s --detach' replaces it", o->id, o->id, o->id);
    return kbox_error_report(&err);
  }
  if (st.stopped) {
    stopped_error(&st, &err);
    return kbox_error_report(&err);
  }
  cleanup_close int lock = kbox_state_lock_exec(&st, (int)(o->timeout_ms + GRACE_MS) + 30000, &err);
  if (lock < 0) return kbox_error_report(&err);
  struct kbox_conn conn;
  if (kbox_state_conn(&st, &conn, &err) < 0) return kbox_error_report(&err);
  cleanup_close int gone = st.pid > 0 ? kbox_pidfd_open(st.pid, 0) : -1;
  struct kbox_client c = {0};
  struct kbox_pyboxout out;
  kbox_pyboxout_init(&out, o->max_output);
  const char *status = "sandbox_error";
  int code = EXEC_FAILURE;
  json_t *verdict = NULL;
  /* A ready kernel answers kernel_info at once: wait no longer than a cell may take. */
  int ready_ms = o->timeout_ms < 30000 ? (int)o->timeout_ms : 30000;
  if (kbox_client_open(&c, &conn, &err) < 0 || kbox_client_wait_ready(&c, ready_ms, gone, &err) < 0) {
    struct kbox_state now;
    kbox_error_t ignored = NULL;
    if (kbox_state_read(o->id, &now, &ignored) == 0 && now.stopped) {
      kbox_error_free(&err);
      stopped_error(&now, &err);
    }
    kbox_error_free(&ignored);
    kbox_pyboxout_set_kbox_error(&out, "SandboxError", err->msg);
  } else {
    enum kbox_exec_end end = run_cells(o, &c, gone, &out);
    bool oom = false;
    if (end == KBOX_EXEC_GONE) verdict = gone_verdict(o, &st, &oom);
    else if (end == KBOX_EXEC_RAISED && kernel_died(&out) && wait_gone(gone, GONE_WAIT_MS))
      verdict = gone_verdict(o, &st, &oom); /* the supervisor answered for the dead kernel, then left its verdict */
    code = outcome(o, end, oom, true, &out, &status);
    struct kbox_state now;
    kbox_error_t ignored = NULL;
    if (end == KBOX_EXEC_STUCK && kbox_state_read(o->id, &now, &ignored) == 0 && now.stopped) {
      stopped_error(&now, &ignored); /* stopped during the cell: that, not the code, is why */
      kbox_pyboxout_set_kbox_error(&out, "TimeoutError", ignored->msg);
    }
    kbox_error_free(&ignored);
  }
  kbox_client_close(&c);
  close(steal_fd(lock)); /* the state below should not show our own lock as "busy" */
  struct kbox_state now;
  kbox_error_t ignored = NULL;
  json_t *report = kbox_state_read(o->id, &now, &ignored) == 0 ? kbox_state_json(&now) : NULL;
  kbox_error_free(&ignored);
  if (report == NULL) report = steal_ptr(verdict); /* the kernel is gone: how it ended */
  json_decref(verdict);
  if (code == EXEC_DIED && report != NULL) json_object_set_new(report, "hint", json_string("the kernel is gone: its log "
                                                                "and state may explain why (kbox inspect)"));
  code = emit(o, &out, status, report, code);
  kbox_pyboxout_free(&out);
  return code;
}

int kbox_cmd_exec(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  struct exec_opts o = {0};
  bool help = false;
  int code;
  if (parse(argc, argv, &o, &help, &err) < 0) {
    code = kbox_error_report(&err);
  } else if (help) {
    exec_usage(stdout);
    code = 0;
  } else {
    signal(SIGPIPE, SIG_IGN);
    code = o.id != NULL ? exec_in(&o) : exec_oneshot(&o);
  }
  kbox_strv_free(&o.cells);
  kbox_strv_free(&o.run_args);
  return code;
}
