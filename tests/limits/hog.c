/* Static helper that misbehaves on purpose, for the limits tests (host and VM):
     hog mem          touch memory 1 MiB at a time until killed
     hog try MIB      allocate MIB at once and touch it; prints ALLOCATED or ENOMEM
     hog forks        fork forever (every child too); retries when fork fails
     hog spin SECS [N]  burn CPU for SECS seconds of wall time in N processes (default 1)
     hog fill PATH MIB  write MIB to PATH; prints WROTE or the errno name (ENOSPC) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int mem(void) {
  for (;;) {
    char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      printf("ENOMEM\n");
      return 3;
    }
    memset(p, 1, 1 << 20);
  }
}

static int try_alloc(long mib) {
  size_t n = (size_t)mib << 20;
  char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    printf("ENOMEM\n");
    return 0;
  }
  memset(p, 1, n);
  printf("ALLOCATED\n");
  return 0;
}

__attribute__((noreturn)) static void forks(void) {
  for (;;) fork();
}

static int spin(double secs, int procs) {
  for (int i = 1; i < procs; i++)
    if (fork() == 0) break;
  double t = now();
  volatile unsigned long x = 0;
  while (now() - t < secs) x++;
  while (wait(NULL) > 0) {}
  return 0;
}

static int fill(const char *path, long mib) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    printf("open: %s\n", strerror(errno));
    return 1;
  }
  static char buf[1 << 16];
  memset(buf, 'x', sizeof(buf));
  for (long i = 0; i < mib * 16; i++) {
    if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
      printf("%s\n", errno == ENOSPC ? "ENOSPC" : strerror(errno));
      return 1;
    }
  }
  if (fsync(fd) < 0 || close(fd) < 0) {
    printf("%s\n", errno == ENOSPC ? "ENOSPC" : strerror(errno));
    return 1;
  }
  printf("WROTE\n");
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc >= 2 && strcmp(argv[1], "mem") == 0) return mem();
  if (argc >= 3 && strcmp(argv[1], "try") == 0) return try_alloc(atol(argv[2]));
  if (argc >= 2 && strcmp(argv[1], "forks") == 0) forks();
  if (argc >= 3 && strcmp(argv[1], "spin") == 0) return spin(atof(argv[2]), argc >= 4 ? atoi(argv[3]) : 1);
  if (argc >= 4 && strcmp(argv[1], "fill") == 0) return fill(argv[2], atol(argv[3]));
  fprintf(stderr, "usage: hog mem | try MIB | forks | spin SECS [N] | fill PATH MIB\n");
  return 2;
}
