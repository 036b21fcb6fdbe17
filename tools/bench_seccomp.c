/* Start-up cost of kbox's least-privilege step: load + validate + compile a profile (host side, once
   per process) and install the compiled filter (per sandbox). Built with -Dbenchmarks=true; run from
   the source root: meson setup build -Dbenchmarks=true && ninja -C build && build/tools/bench_seccomp profiles/default.json */
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "security/profile.h"
#include "security/seccomp.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "profiles/default.json";
  enum { N = 200 };
  double load = 0, compile = 0, install = 0;
  for (int i = 0; i < N; i++) {
    kbox_error_t err = NULL;
    struct kbox_profile *p = NULL;
    double t0 = now_ms();
    if (kbox_profile_load(path, &p, &err) < 0) return fprintf(stderr, "%s\n", err->msg), 1;
    double t1 = now_ms();
    struct kbox_seccomp_compiled c;
    if (kbox_seccomp_compile(&p->seccomp, &c, &err) < 0) return fprintf(stderr, "%s\n", err->msg), 1;
    double t2 = now_ms();
    int pipefd[2];
    if (pipe(pipefd) < 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
      double a = now_ms();
      prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
      if (kbox_seccomp_install(&c, &err) < 0) _exit(1);
      double d = now_ms() - a;
      if (write(pipefd[1], &d, sizeof(d)) != sizeof(d)) _exit(1);
      _exit(0);
    }
    double d = 0;
    if (read(pipefd[0], &d, sizeof(d)) != sizeof(d)) return 1;
    waitpid(pid, NULL, 0);
    close(pipefd[0]);
    close(pipefd[1]);
    load += t1 - t0;
    compile += t2 - t1;
    install += d;
    if (i == 0) printf("programs=%zu instructions=%u+%u\n", c.n, c.progs[0].len, c.n > 1 ? c.progs[1].len : 0);
    kbox_seccomp_compiled_free(&c);
    kbox_profile_free(p);
  }
  printf("mean over %d: load+validate %.3f ms, compile %.3f ms, install %.3f ms\n", N, load / N, compile / N, install / N);
  return 0;
}
