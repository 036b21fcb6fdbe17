/* probe: a static helper run INSIDE the sandbox by the integration tests. It performs the checks named
   on its command line and prints one "key=value" line per result, so tests assert from the inside. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Number of processes visible in /proc. */
static int count_pids(void) {
  DIR *d = opendir("/proc");
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] >= '1' && e->d_name[0] <= '9';
  closedir(d);
  return n;
}

/* Interfaces from /proc/net/dev, comma separated, each with :up/:down. */
static void list_ifaces(void) {
  FILE *f = fopen("/proc/net/dev", "r");
  if (f == NULL) { printf("ifaces=error:%s\n", strerror(errno)); return; }
  char line[512], out[1024] = "";
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  for (int i = 0; fgets(line, sizeof(line), f) != NULL; i++) {
    if (i < 2) continue;
    char *colon = strchr(line, ':');
    if (colon == NULL) continue;
    *colon = '\0';
    char *name = line;
    while (*name == ' ') name++;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%.15s", name);
    int up = ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
    snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s:%s", out[0] ? "," : "", name, up ? "up" : "down");
  }
  fclose(f);
  close(s);
  printf("ifaces=%s\n", out);
}

/* TCP listen + connect on 127.0.0.1. */
static void loopback_tcp(void) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
      getsockname(l, (struct sockaddr *)&a, &len) < 0) {
    printf("loopback_tcp=error:%s\n", strerror(errno));
    return;
  }
  int c = socket(AF_INET, SOCK_STREAM, 0);
  int rc = connect(c, (struct sockaddr *)&a, sizeof(a));
  printf("loopback_tcp=%s\n", rc == 0 ? "ok" : strerror(errno));
  close(c);
  close(l);
}

/* connect() to an address outside (a documentation-only address: no packet can leave the netns). */
static void outside_tcp(const char *ip) {
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
  inet_pton(AF_INET, ip, &a.sin_addr);
  int rc = connect(c, (struct sockaddr *)&a, sizeof(a));
  printf("outside_tcp=%s\n", rc == 0 ? "connected" : strerror(errno));
  close(c);
}

static void do_read(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) { printf("read:%s=denied:%s\n", path, strerror(errno)); return; }
  char buf[64];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n < 0) printf("read:%s=denied:%s\n", path, strerror(errno));
  else printf("read:%s=%zd\n", path, n);
}

static void do_write(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) { printf("write:%s=denied:%s\n", path, strerror(errno)); return; }
  ssize_t n = write(fd, "kbox-probe\n", 11);
  int e = errno;
  close(fd);
  printf("write:%s=%s\n", path, n == 11 ? "ok" : strerror(e));
}

static void do_ls(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) { printf("ls:%s=denied:%s\n", path, strerror(errno)); return; }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  printf("ls:%s=%d\n", path, n);
}

static void info(void) {
  char host[256] = "";
  gethostname(host, sizeof(host));
  char cwd[4096] = "";
  if (getcwd(cwd, sizeof(cwd)) == NULL) strcpy(cwd, "?");
  printf("pid=%d\nppid=%d\nuid=%u\ngid=%u\nvisible_pids=%d\nhostname=%s\ncwd=%s\n", getpid(), getppid(),
         getuid(), getgid(), count_pids(), host, cwd);
  list_ifaces();
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 1; i < argc; i++) {
    const char *cmd = argv[i];
    const char *arg = i + 1 < argc ? argv[i + 1] : "";
    if (strcmp(cmd, "info") == 0) info();
    else if (strcmp(cmd, "loopback") == 0) loopback_tcp();
    else if (strcmp(cmd, "outside") == 0) { outside_tcp(arg); i++; }
    else if (strcmp(cmd, "exists") == 0) { printf("exists:%s=%d\n", arg, access(arg, F_OK) == 0); i++; }
    else if (strcmp(cmd, "read") == 0) { do_read(arg); i++; }
    else if (strcmp(cmd, "write") == 0) { do_write(arg); i++; }
    else if (strcmp(cmd, "ls") == 0) { do_ls(arg); i++; }
    else if (strcmp(cmd, "env") == 0) { const char *v = getenv(arg); printf("env:%s=%s\n", arg, v ? v : "<unset>"); i++; }
    else if (strcmp(cmd, "exit") == 0) return atoi(arg);
    else if (strcmp(cmd, "kill") == 0) { fflush(stdout); kill(getpid(), atoi(arg)); pause(); }
    else if (strcmp(cmd, "sleep") == 0) { sleep((unsigned)atoi(arg)); i++; }
    else if (strcmp(cmd, "ready") == 0) { printf("ready\n"); fflush(stdout); }
    else if (strcmp(cmd, "trap") == 0) {
      /* Exit with 100+N when signal N arrives (shows that signals are forwarded). */
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGTERM); sigaddset(&set, SIGINT); sigaddset(&set, SIGHUP); sigaddset(&set, SIGUSR1);
      sigprocmask(SIG_BLOCK, &set, NULL);
      printf("trapping\n");
      fflush(stdout);
      int sig = 0;
      sigwait(&set, &sig);
      return 100 + sig;
    } else { fprintf(stderr, "probe: unknown command %s\n", cmd); return 2; }
  }
  return 0;
}
