/* kbox: verb dispatch. The verbs that talk to kernels live in kbox-kernel.so (cmd/kmod.h), loaded
   only when one of them runs. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "cmd/commands.h"
#include "cmd/kmod.h"
#include "config.h"
#include "util/parse.h"
#include "util/trace.h"
#include "util/log.h"

struct verb {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
};

static const struct verb verbs[] = {
    {"run", kbox_cmd_run, "run a command, or a Jupyter kernel behind a broker, in a new sandbox"},
    {"kernelspec", kbox_cmd_kernelspec, "install, list or remove Jupyter kernelspecs that start sandboxed kernels"},
    {"entrypoint", kbox_kmod_entrypoint, "kernel image entrypoint for Enterprise Gateway and jupyter-kernel-controller pods"},
    {"exec", kbox_kmod_exec, "run code in a sandboxed kernel and print the outputs as one JSON object"},
    {"ps", kbox_kmod_ps, "list the kernels started with an id (--detach), with status and memory"},
    {"inspect", kbox_kmod_inspect, "show one kernel's state as JSON"},
    {"interrupt", kbox_kmod_interrupt, "interrupt the cell running in a kernel"},
    {"kill", kbox_kmod_kill, "shut a kernel down (gracefully, then by force) and remove its state"},
    {"doctor", kbox_cmd_doctor, "report what this host allows and what each missing piece disables"},
    {"audit", kbox_cmd_audit, "show an --audit log (JSON Lines) for people"},
    {"warm", kbox_cmd_warm, "start, stop or list the zygotes that make warm (pre-imported) kernels"},
    {"image", kbox_cmd_image, "build, list, inspect or remove root filesystem images"},
};

static void usage(FILE *out) {
  fprintf(out, "Usage: kbox [--version] [--help] VERB [OPTIONS...]\n"
               "kbox runs untrusted Python (Jupyter kernels and commands) in a lightweight sandbox.\n\nVerbs:\n");
  for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) fprintf(out, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
  fprintf(out, "\nRun 'kbox VERB --help' for the options of a verb.\n"
               "Example: kbox run --rootfs / -- sh -c 'id; hostname; cat /proc/net/dev'\n");
}

/* A closed stdin, stdout or stderr would be taken by the next open(): a socket or lock file would
   then receive kbox's messages or the sandbox's output. Put /dev/null there before anything else. */
static void fill_closed_stdio(void) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    int null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (null < 0) _exit(125); /* no /dev/null: nothing safe to say it with */
    if (null != fd) { /* lower fds were closed too and are filled first, so null == fd */
      dup2(null, fd);
      close(null);
    }
  }
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
  fill_closed_stdio();
  raise_nofile();
  kbox_trace_init();
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
  char q[256];
  kbox_log(KBOX_LOG_ERROR, "unknown verb '%s' (see 'kbox --help')", kbox_quote(argv[1], q, sizeof(q)));
  return 125;
}
