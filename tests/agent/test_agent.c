/* kbox exec and detached kernels, as an agent uses them: one JSON object per call. Kernels run
   with --rootfs / and the host's /usr/bin/python3 (python3-ipykernel); each test gets its own
   XDG_RUNTIME_DIR so state directories and `ps` output belong to it alone. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

#define KCMD "--kernel-cmd=/usr/bin/python3 -m ipykernel_launcher -f {connection_file}"

static char *rundir;      /* XDG_RUNTIME_DIR of this test */
static char env_xdg[512];

static void setup(void) {
  if (system("/usr/bin/python3 -c 'import ipykernel' 2>/dev/null") != 0)
    kt_skip_or_fail("/usr/bin/python3 has no ipykernel (apt-get install python3-ipykernel)");
  if (!kt_is_root() && !kt_userns_works((int)getuid())) kt_skip_or_fail("needs root or user namespaces");
  rundir = kt_tmpdir();
  snprintf(env_xdg, sizeof(env_xdg), "XDG_RUNTIME_DIR=%s", rundir);
}

static void teardown(void) {
  if (rundir == NULL) return;
  /* kill whatever a failed test left running */
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "for d in %s/kbox/*/; do [ -d \"$d\" ] && XDG_RUNTIME_DIR=%s %s kill \"$(basename \"$d\")\"; done 2>/dev/null",
           rundir, rundir, kt_kbox());
  if (system(cmd) < 0) {
  }
  kt_rmrf(rundir);
  free(rundir);
  rundir = NULL;
}

TestSuite(agent, .init = setup, .fini = teardown);

/* Run kbox with argv (NULL-terminated, without the binary) in this test's runtime dir. */
static struct kt_result kbox(const char *const *args) {
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)kt_kbox();
  for (; *args != NULL && n < 63; args++) argv[n++] = (char *)*args;
  argv[n] = NULL;
  char *env[] = {env_xdg, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, 300, &r), 0, "could not run kbox");
  return r;
}

/* Run a shell script with KBOX and this test's runtime dir set. */
static struct kt_result shell(const char *script) {
  char kb[600];
  snprintf(kb, sizeof(kb), "KBOX=%s", kt_kbox());
  char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
  char *env[] = {env_xdg, kb, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, env, -1, 300, &r), 0, "could not run sh");
  return r;
}

static json_t *parse_json(const struct kt_result *r) {
  json_error_t e;
  json_t *j = json_loads(r->out, JSON_DISABLE_EOF_CHECK, &e);
  cr_assert_not_null(j, "stdout is not JSON (%s): %s\nstderr: %s", e.text, r->out, r->err);
  return j;
}

static const char *str(json_t *j, const char *key) { return json_string_value(json_object_get(j, key)); }

/* kbox exec --rootfs / KCMD [extra...] -c CODE; the parsed JSON, exit code in *code. */
static json_t *exec_code(const char *code, const char *extra1, const char *extra2, int *exit_code) {
  const char *args[16] = {"exec", "--rootfs", "/", KCMD};
  int n = 4;
  if (extra1) args[n++] = extra1;
  if (extra2) args[n++] = extra2;
  args[n++] = "-c";
  args[n++] = code;
  args[n] = NULL;
  struct kt_result r = kbox(args);
  json_t *j = parse_json(&r);
  *exit_code = r.exit_code;
  kt_result_free(&r);
  return j;
}

Test(agent, sqrt_result_is_a_text_bundle) {
  int code;
  json_t *j = exec_code("import math\nresult = math.sqrt(16)\nresult", NULL, NULL, &code);
  cr_assert_eq(code, 0);
  json_t *data = json_object_get(j, "data");
  cr_assert_eq(json_array_size(data), 1, "data: %s", json_dumps(data, 0));
  json_t *b = json_array_get(data, 0);
  cr_assert_eq(json_object_size(b), 1);
  cr_assert_str_eq(str(b, "text/plain"), "4.0");
  cr_assert(json_is_null(json_object_get(j, "error")));
  cr_assert_str_eq(str(j, "status"), "ok");
  json_t *report = json_object_get(j, "report");
  cr_assert(json_is_object(report), "the sandbox verdict is missing");
  cr_assert(json_is_false(json_object_get(report, "oom_killed")));
  cr_assert(json_is_object(json_object_get(report, "limits")));
  json_decref(j);
}

Test(agent, print_then_error_keeps_both) {
  int code;
  json_t *j = exec_code("print('before the error')\n1/0", NULL, NULL, &code);
  cr_assert_eq(code, 1, "a raising cell exits 1");
  json_t *data = json_object_get(j, "data");
  cr_assert_eq(json_array_size(data), 1);
  cr_assert_str_eq(str(json_array_get(data, 0), "text/plain"), "before the error\n");
  json_t *e = json_object_get(j, "error");
  cr_assert_str_eq(str(e, "ename"), "ZeroDivisionError");
  cr_assert_str_eq(str(e, "evalue"), "division by zero");
  json_t *tb = json_object_get(e, "traceback");
  cr_assert(json_array_size(tb) > 0, "no traceback");
  bool mentions = false;
  size_t i;
  json_t *line;
  json_array_foreach(tb, i, line) if (strstr(json_string_value(line), "ZeroDivisionError")) mentions = true;
  cr_assert(mentions);
  cr_assert_str_eq(str(j, "status"), "error");
  json_decref(j);
}

Test(agent, cells_run_in_order_and_stop_at_the_first_error) {
  const char *args[] = {"exec", "--rootfs", "/", KCMD, "-c", "x = 20", "-c", "x * 2", "-c", "raise ValueError('stop')",
                        "-c", "print('never')", NULL};
  struct kt_result r = kbox(args);
  json_t *j = parse_json(&r);
  cr_assert_eq(r.exit_code, 1);
  json_t *data = json_object_get(j, "data");
  cr_assert_eq(json_array_size(data), 1, "%s", r.out);
  cr_assert_str_eq(str(json_array_get(data, 0), "text/plain"), "40");
  cr_assert_str_eq(str(json_object_get(j, "error"), "ename"), "ValueError");
  json_decref(j);
  kt_result_free(&r);
}

Test(agent, plot_gives_png) {
  if (system("/usr/bin/python3 -c 'import matplotlib' 2>/dev/null") != 0)
    kt_skip_or_fail("/usr/bin/python3 has no matplotlib (apt-get install python3-matplotlib)");
  int code;
  json_t *j = exec_code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()", NULL, NULL, &code);
  cr_assert_eq(code, 0);
  json_t *data = json_object_get(j, "data");
  const char *png = NULL;
  size_t i;
  json_t *b;
  json_array_foreach(data, i, b) if (str(b, "image/png")) png = str(b, "image/png");
  cr_assert_not_null(png, "no image/png bundle in %s", json_dumps(data, 0));
  cr_assert(strncmp(png, "iVBORw0KGgo", 11) == 0, "image/png is not base64 of a PNG");
  json_decref(j);
}

Test(agent, infinite_loop_is_interrupted_at_the_timeout) {
  int code;
  json_t *j = exec_code("print('looping', flush=True)\nwhile True: pass", "--timeout", "2", &code);
  cr_assert_eq(code, 124, "a timeout exits 124");
  cr_assert_str_eq(str(j, "status"), "timeout");
  cr_assert(json_is_true(json_object_get(j, "timed_out")));
  cr_assert_str_eq(str(json_array_get(json_object_get(j, "data"), 0), "text/plain"), "looping\n");
  cr_assert_not_null(json_object_get(j, "error"));
  cr_assert_str_eq(str(json_object_get(j, "error"), "ename"), "KeyboardInterrupt");
  json_decref(j);
}

Test(agent, memory_hog_reports_oom) {
  if (!kt_is_root()) kt_skip_or_fail("memory limits need cgroups (root)");
  int code;
  json_t *j = exec_code("x = bytearray(1 << 30)\nx[::4096] = b'a' * len(x[::4096])", "--memory", "128M", &code);
  cr_assert_eq(code, 3, "out of memory exits 3; got %d", code);
  cr_assert_str_eq(str(j, "status"), "oom");
  cr_assert(json_is_true(json_object_get(json_object_get(j, "report"), "oom_killed")));
  cr_assert_str_eq(str(json_object_get(j, "error"), "ename"), "SandboxMemoryLimit");
  cr_assert(strstr(str(json_object_get(j, "error"), "evalue"), "128 MiB") != NULL, "the evalue names the limit");
  json_decref(j);
}

Test(agent, max_output_truncates_with_a_marker) {
  int code;
  json_t *j = exec_code("print('x' * 5000)\nprint('y' * 5000)", "--max-output", "1000", &code);
  cr_assert_eq(code, 0);
  cr_assert(json_is_true(json_object_get(j, "truncated")));
  json_t *data = json_object_get(j, "data");
  cr_assert_eq(json_array_size(data), 2);
  cr_assert_eq(strlen(str(json_array_get(data, 0), "text/plain")), 1000);
  cr_assert_not_null(strstr(str(json_array_get(data, 1), "text/plain"), "truncated"));
  json_decref(j);
}

Test(agent, text_rendering) {
  const char *args[] = {"exec", "--rootfs", "/", KCMD, "--text", "-c", "print('hello')\n6 * 7", NULL};
  struct kt_result r = kbox(args);
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  cr_assert_str_eq(r.out, "hello\n42\n");
  kt_result_free(&r);
}

/* `kbox inspect ID` as JSON (NULL when it fails). */
static json_t *inspect(const char *id) {
  const char *args[] = {"inspect", id, NULL};
  struct kt_result r = kbox(args);
  json_t *j = r.exit_code == 0 ? json_loads(r.out, 0, NULL) : NULL;
  kt_result_free(&r);
  return j;
}

static char *start_detached(const char *id) {
  const char *args[] = {"run", "--rootfs", "/", KCMD, "--id", id, "--detach", NULL};
  struct kt_result r = kbox(args);
  cr_assert_eq(r.exit_code, 0, "run --detach failed: %s", r.err);
  json_t *c = parse_json(&r);
  cr_assert_str_eq(str(c, "kernel_id"), id);
  cr_assert(json_integer_value(json_object_get(c, "shell_port")) > 0);
  json_decref(c);
  char *out = strdup(r.out);
  kt_result_free(&r);
  return out;
}

static json_t *exec_in(const char *id, const char *code, int *exit_code) {
  const char *args[] = {"exec", "--id", id, "-c", code, NULL};
  struct kt_result r = kbox(args);
  json_t *j = parse_json(&r);
  *exit_code = r.exit_code;
  kt_result_free(&r);
  return j;
}

Test(agent, detached_kernel_keeps_state_and_is_listed_then_killed) {
  char id[64];
  snprintf(id, sizeof(id), "agent-keep-%d", (int)getpid());
  char *conn1 = start_detached(id);
  char *conn2 = start_detached(id);
  cr_assert_str_eq(conn1, conn2, "get-or-create must return the running kernel's connection");
  int code;
  json_t *j = exec_in(id, "x = 41", &code);
  cr_assert_eq(code, 0);
  json_decref(j);
  j = exec_in(id, "x + 1", &code);
  cr_assert_eq(code, 0);
  cr_assert_str_eq(str(json_array_get(json_object_get(j, "data"), 0), "text/plain"), "42");
  json_decref(j);

  const char *ps[] = {"ps", "--json", NULL};
  struct kt_result r = kbox(ps);
  json_t *all = parse_json(&r);
  kt_result_free(&r);
  cr_assert_eq(json_array_size(all), 1);
  json_t *k = json_array_get(all, 0);
  cr_assert_str_eq(str(k, "id"), id);
  cr_assert_str_eq(str(k, "status"), "idle");
  cr_assert(json_integer_value(json_object_get(json_object_get(k, "limits"), "memory")) > 0);
  const char *state_dir = str(k, "state_dir");
  cr_assert_eq(access(state_dir, F_OK), 0);
  char *dir = strdup(state_dir);
  json_decref(all);
  const char *pst[] = {"ps", NULL};
  r = kbox(pst);
  cr_assert_not_null(strstr(r.out, id), "ps: %s", r.out);
  kt_result_free(&r);

  const char *kill_args[] = {"kill", id, NULL};
  r = kbox(kill_args);
  cr_assert_eq(r.exit_code, 0, "kill: %s", r.err);
  kt_result_free(&r);
  cr_assert_neq(access(dir, F_OK), 0, "kill must remove the state directory %s", dir);
  r = kbox(ps);
  all = parse_json(&r);
  cr_assert_eq(json_array_size(all), 0, "ps after kill: %s", r.out);
  json_decref(all);
  kt_result_free(&r);
  free(dir);
  free(conn1);
  free(conn2);
}

Test(agent, killed_supervisor_leaves_no_state_and_run_replaces) {
  char id[64];
  snprintf(id, sizeof(id), "agent-dead-%d", (int)getpid());
  char *conn1 = start_detached(id);
  json_t *k = inspect(id);
  cr_assert_not_null(k);
  pid_t pid = (pid_t)json_integer_value(json_object_get(k, "pid"));
  json_decref(k);
  cr_assert(pid > 0);
  cr_assert_eq(kill(pid, SIGKILL), 0);
  /* its reaper removes the state (the key is in it) once the sandbox is gone too; bounded by the
     test timeout, no fixed sleep */
  while ((k = inspect(id)) != NULL) {
    json_decref(k);
    usleep(100 * 1000);
  }
  const char *ps[] = {"ps", NULL};
  struct kt_result r = kbox(ps);
  cr_assert_null(strstr(r.out, id), "ps shows the killed kernel: %s", r.out);
  kt_result_free(&r);
  const char *ex[] = {"exec", "--id", id, "-c", "1", NULL};
  r = kbox(ex);
  cr_assert_eq(r.exit_code, 125);
  cr_assert_not_null(strstr(r.err, "no kernel with id"), "%s", r.err);
  kt_result_free(&r);
  char *conn2 = start_detached(id);
  cr_assert_str_neq(conn1, conn2, "a dead kernel's connection must not be handed out");
  int code;
  json_t *j = exec_in(id, "'alive again'", &code);
  cr_assert_eq(code, 0);
  cr_assert_str_eq(str(json_array_get(json_object_get(j, "data"), 0), "text/plain"), "'alive again'");
  json_decref(j);
  free(conn1);
  free(conn2);
}

Test(agent, concurrent_execs_on_one_kernel_do_not_interleave) {
  char id[64], script[2048];
  snprintf(id, sizeof(id), "agent-conc-%d", (int)getpid());
  free(start_detached(id));
  snprintf(script, sizeof(script),
           "$KBOX exec --id %s -c 'import time\nprint(\"a1\", flush=True)\ntime.sleep(1.5)\nprint(\"a2\")' > %s/a.json &"
           "$KBOX exec --id %s -c 'print(\"b1\")\nprint(\"b2\")' > %s/b.json; wait; cat %s/a.json %s/b.json",
           id, rundir, id, rundir, rundir, rundir);
  struct kt_result r = shell(script);
  cr_assert_eq(r.exit_code, 0, "%s", r.err);
  json_error_t e;
  json_t *a = json_loads(r.out, JSON_DISABLE_EOF_CHECK, &e);
  cr_assert_not_null(a, "%s", r.out);
  json_t *b = json_loads(r.out + e.position, JSON_DISABLE_EOF_CHECK, &e);
  cr_assert_not_null(b, "%s", r.out);
  cr_assert_str_eq(str(json_array_get(json_object_get(a, "data"), 0), "text/plain"), "a1\na2\n");
  cr_assert_str_eq(str(json_array_get(json_object_get(b, "data"), 0), "text/plain"), "b1\nb2\n");
  json_decref(a);
  json_decref(b);
  kt_result_free(&r);
}

Test(agent, interrupt_stops_a_running_cell) {
  char id[64], script[2048];
  snprintf(id, sizeof(id), "agent-int-%d", (int)getpid());
  free(start_detached(id));
  /* interrupt repeatedly until the exec returns: no assumption on when the cell starts */
  snprintf(script, sizeof(script),
           "$KBOX exec --id %s -c 'import time\ntime.sleep(120)' > %s/int.json & p=$!;"
           "i=0; while kill -0 $p 2>/dev/null && [ $i -lt 200 ]; do sleep 0.3; $KBOX interrupt %s; i=$((i+1)); done;"
           "wait $p; echo $? > %s/rc; cat %s/int.json",
           id, rundir, id, rundir, rundir);
  struct kt_result r = shell(script);
  json_t *j = parse_json(&r);
  /* The cell must have been stopped by the interrupt: normally ipykernel reports an error named
     KeyboardInterrupt; when the SIGINT lands while IPython is still entering the cell (before user
     code runs), IPython prints the KeyboardInterrupt traceback as output and ends the cell "ok".
     Either way the 120 s sleep did not run to its end and the interrupt is what the cell shows. */
  json_t *error = json_object_get(j, "error");
  bool interrupted = json_is_object(error) && strcmp(str(error, "ename"), "KeyboardInterrupt") == 0;
  size_t i;
  json_t *bundle;
  json_array_foreach(json_object_get(j, "data"), i, bundle) {
    const char *text = str(bundle, "text/plain");
    interrupted |= text != NULL && strstr(text, "KeyboardInterrupt") != NULL;
  }
  cr_assert(interrupted, "the cell does not show the interrupt: %s", r.out);
  json_decref(j);
  kt_result_free(&r);
  int code;
  j = exec_in(id, "'still here'", &code);
  cr_assert_eq(code, 0, "the kernel must survive an interrupt");
  json_decref(j);
}

Test(agent, bad_and_unknown_ids_are_refused_clearly) {
  const char *bad[][5] = {{"exec", "--id", "../etc", "-c", "1"}, {"inspect", "a/b", NULL}, {"kill", "..", NULL},
                          {"run", "--id", "x/y", "--detach", NULL}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *args[6] = {0};
    memcpy(args, bad[i], sizeof(bad[i]));
    struct kt_result r = kbox(args);
    cr_assert_eq(r.exit_code, 125, "%s: %d", bad[i][0], r.exit_code);
    cr_assert_not_null(strstr(r.err, "id '"), "%s: %s", bad[i][0], r.err);
    kt_result_free(&r);
  }
  const char *unknown[][5] = {{"exec", "--id", "nosuchkernel", "-c", "1"}, {"inspect", "nosuchkernel", NULL},
                              {"kill", "nosuchkernel", NULL}, {"interrupt", "nosuchkernel", NULL}};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    const char *args[6] = {0};
    memcpy(args, unknown[i], sizeof(unknown[i]));
    struct kt_result r = kbox(args);
    cr_assert_eq(r.exit_code, 125);
    cr_assert_not_null(strstr(r.err, "no kernel with id 'nosuchkernel'"), "%s: %s", unknown[i][0], r.err);
    kt_result_free(&r);
  }
}
