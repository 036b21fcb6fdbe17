/* kbox: verb dispatch. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "cmd/commands.h"
#include "config.h"

struct verb {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
};

static const struct verb verbs[] = {
    {"run", kbox_cmd_run, "run a command, or a Jupyter kernel behind a broker, in a new sandbox"},
    {"kernelspec", kbox_cmd_kernelspec, "install, list or remove Jupyter kernelspecs that start sandboxed kernels"},
    {"entrypoint", kbox_cmd_entrypoint, "kernel image entrypoint for Enterprise Gateway and jupyter-kernel-controller pods"},
    {"exec", kbox_cmd_exec, "run code in a sandboxed kernel and print the outputs as one JSON object"},
    {"ps", kbox_cmd_ps, "list the kernels started with an id (--detach), with status and memory"},
    {"inspect", kbox_cmd_inspect, "show one kernel's state as JSON"},
    {"interrupt", kbox_cmd_interrupt, "interrupt the cell running in a kernel"},
    {"kill", kbox_cmd_kill, "shut a kernel down (gracefully, then by force) and remove its state"},
    {"doctor", kbox_cmd_doctor, "report what this host allows and what each missing piece disables"},
    {"image", kbox_cmd_image, "build, list, inspect or remove root filesystem images"},
};

static void usage(FILE *out) {
  fprintf(out, "Usage: kbox [--version] [--help] VERB [OPTIONS...]\n"
               "kbox runs untrusted Python (Jupyter kernels and commands) in a lightweight sandbox.\n\nVerbs:\n");
  for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) fprintf(out, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
  fprintf(out, "\nRun 'kbox VERB --help' for the options of a verb.\n"
               "Example: kbox run --rootfs / -- sh -c 'id; hostname; cat /proc/net/dev'\n");
}

/* kbox's own open-file limit: the soft limit up to the hard one, so the broker's connections and
   sockets are not capped at an inherited 1024 (the sandbox gets its own --nofile). */
static void raise_nofile(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

int main(int argc, char **argv) {
  raise_nofile();
  if (argc < 2) {
    usage(stderr);
    return 125;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    printf("kbox %s\n", KBOX_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
    if (strcmp(argv[1], verbs[i].name) == 0) return verbs[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "kbox: unknown verb '%s' (see 'kbox --help')\n", argv[1]);
  return 125;
}
