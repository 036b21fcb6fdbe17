#include "warm/service.h"
#include "util/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "config.h"
#include "sandbox/idmap.h"
#include "sandbox/ns.h"
#include "sandbox/sandbox.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/selfexec.h"
#include "warm/pool.h"
#include "warm/proto.h"

#define DEFAULT_BASE "/run/kbox/warm"
#define STOP_GRACE_MS 3000

/* Rootless: the caller's own runtime directory, as kbox's state (kernel/state.c) picks it:
   $XDG_RUNTIME_DIR/kbox, else /tmp/kbox-UID, which must be ours and 0700. */
static int user_base(char *out, size_t n, kbox_error_t *err) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  struct stat st;
  char parent[PATH_MAX];
  if (xdg != NULL && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) && access(xdg, W_OK) == 0)
    snprintf(parent, sizeof(parent), "%s/kbox", xdg);
  else
    snprintf(parent, sizeof(parent), "/tmp/kbox-%u", (unsigned)geteuid());
  if (mkdir(parent, 0700) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating %s", parent);
  if (lstat(parent, &st) < 0) return kbox_error_make(err, errno, "%s", parent);
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0)
    return kbox_error_make(err, 0, "%s must be a directory owned by uid %u with mode 0700 (refusing to trust it)", parent,
                           (unsigned)geteuid());
  snprintf(out, n, "%s/warm", parent);
  return 0;
}

int kbox_warm_base(char *out, size_t n, kbox_error_t *err) {
  const char *env = getenv("KBOX_WARM_DIR");
  if (env != NULL && env[0] != '\0')
    snprintf(out, n, "%s", env);
  else if (geteuid() != 0) {
    if (user_base(out, n, err) < 0) return -1;
  } else {
    snprintf(out, n, "%s", DEFAULT_BASE);
    if (mkdir("/run/kbox", 0755) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating /run/kbox");
  }
  if (mkdir(out, 0700) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating %s", out);
  return 0;
}

int kbox_warm_lib_path(char *out, size_t n, kbox_error_t *err) {
  if (out == NULL || n == 0) return kbox_error_make(err, EINVAL, "internal: no buffer for the library path");
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len > 0) {
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL) *slash = '\0';
    snprintf(out, n, "%s/warm/libkbox-warm.so", exe); /* build tree */
    if (access(out, R_OK) == 0) return 0;
  }
  snprintf(out, n, "%s/libkbox-warm.so", KBOX_LIBDIR);
  if (access(out, R_OK) == 0) return 0;
  return kbox_error_make(err, 0, "libkbox-warm.so is missing (beside kbox or in %s); reinstall kbox", KBOX_LIBDIR);
}

/* FNV-1a over bytes. */
static void mix(uint64_t *h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    *h ^= b[i];
    *h *= 1099511628211ULL;
  }
}

/* Mix a file's identity (device, inode, size, change time) into the key. */
static int mix_file(uint64_t *h, const char *path, kbox_error_t *err) {
  struct stat st;
  if (stat(path, &st) < 0) return kbox_error_make(err, errno, "warm start: %s", path);
  mix(h, path, strlen(path));
  uint64_t v[5] = {st.st_dev, st.st_ino, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
  mix(h, v, sizeof(v));
  return 0;
}

int kbox_warm_key_dir(const struct kbox_spec *spec, char *out, size_t n, kbox_error_t *err) {
  uint64_t h = 14695981039346656037ULL;
  uint32_t magic = KBOX_WARM_MAGIC;
  mix(&h, &magic, sizeof(magic));
  char lib[PATH_MAX], path[PATH_MAX];
  if (mix_file(&h, "/proc/self/exe", err) < 0 || kbox_warm_lib_path(lib, sizeof(lib), err) < 0 || mix_file(&h, lib, err) < 0)
    return -1;
  bool have_zygote = false;
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++) {
    cleanup_free char *real = realpath(spec->sandbox.rootfs.v[i], NULL);
    if (real == NULL) return kbox_error_make(err, errno, "warm start: --rootfs %s", spec->sandbox.rootfs.v[i]);
    if (mix_file(&h, real, err) < 0) return -1;
    snprintf(path, sizeof(path), "%s%s", real, KBOX_WARM_ZYGOTE_PY);
    if (access(path, R_OK) == 0) {
      have_zygote = true;
      if (mix_file(&h, path, err) < 0) return -1;
    }
    snprintf(path, sizeof(path), "%s/etc/kbox/warm.txt", real); /* the image's warm list */
    if (access(path, R_OK) == 0 && mix_file(&h, path, err) < 0) return -1;
  }
  if (!have_zygote) return kbox_error_make(err, 0, "no layer has the zygote (%s): use an image with the kbox layer", KBOX_WARM_ZYGOTE_PY);
  char base[PATH_MAX - 64];
  if (kbox_warm_base(base, sizeof(base), err) < 0) return -1;
  mix(&h, base, strlen(base)); /* the key names the zygote's sandbox id: unique per base dir */
  snprintf(out, n, "%s/%016llx", base, (unsigned long long)h);
  return 0;
}

bool kbox_warm_serving(const char *keydir) {
  char path[PATH_MAX + 8];
  snprintf(path, sizeof(path), "%s.lock", keydir);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) return false; /* nobody holds it (closing releases ours) */
  return errno == EWOULDBLOCK;
}

bool kbox_warm_ready(const char *keydir) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (snprintf(a.sun_path, sizeof(a.sun_path), "%s/zygote.sock", keydir) >= (int)sizeof(a.sun_path)) return false;
  /* A socket left by a server that was killed is no zygote: the lock says whether one runs. */
  return access(a.sun_path, F_OK) == 0 && kbox_warm_serving(keydir);
}

int kbox_warm_spawn(const struct kbox_spec *spec, kbox_error_t *err) {
  struct kbox_strv argv = {0};
  kbox_strv_add(&argv, "kbox");
  kbox_strv_add(&argv, "warm");
  kbox_strv_add(&argv, "serve");
  for (size_t i = 0; i < spec->sandbox.rootfs.n; i++) {
    kbox_strv_add(&argv, "--rootfs");
    kbox_strv_add(&argv, spec->sandbox.rootfs.v[i]);
  }
  pid_t r = kbox_selfexec(argv.v, &(struct kbox_selfexec){.detach = true}, err);
  kbox_strv_free(&argv);
  return r < 0 ? -1 : 0;
}

/* Serve: the zygote's own sandbox (see docs/warm.md for what differs from a kernel's). */
static int zygote_spec(struct kbox_spec *spec, const char *keydir, kbox_error_t *err) {
  char lib[PATH_MAX];
  if (kbox_warm_lib_path(lib, sizeof(lib), err) < 0) return -1;
  const char *slash = strrchr(keydir, '/');
  free(spec->id);
  free(spec->sandbox.hostname);
  spec->id = xasprintf("warm-%s", slash + 1);
  spec->sandbox.hostname = xstrdup("kbox-zygote");
  const char *dir = spec->rootless ? KBOX_WARM_ROOTLESS_DIR : KBOX_WARM_INNER_DIR;
  const char *inner_lib = spec->rootless ? KBOX_WARM_ROOTLESS_LIB : KBOX_WARM_INNER_LIB;
  kbox_spec_add_bind(spec, keydir, dir, false);
  kbox_spec_add_bind(spec, lib, inner_lib, true);
  kbox_strv_free(&spec->sandbox.argv);
  kbox_strv_add(&spec->sandbox.argv, "python3");
  kbox_strv_add(&spec->sandbox.argv, KBOX_WARM_ZYGOTE_PY);
  /* BLAS/OpenMP pools start at import: one thread, so the zygote has none to lose at fork. */
  static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1",
                                    "PYTHONDONTWRITEBYTECODE=1", "PYDEVD_DISABLE_FILE_VALIDATION=1", NULL};
  for (size_t i = 0; env[i] != NULL; i++) kbox_strv_add(&spec->sandbox.env, env[i]);
  if (spec->rootless) {
    kbox_strv_add(&spec->sandbox.env, "KBOX_WARM_INNER_DIR=" KBOX_WARM_ROOTLESS_DIR);
    kbox_strv_add(&spec->sandbox.env, "KBOX_WARM_INNER_LIB=" KBOX_WARM_ROOTLESS_LIB);
  }
  const char *idle = getenv("KBOX_WARM_IDLE");
  if (idle != NULL) {
    kbox_strv_add_owned(&spec->sandbox.env, xasprintf("KBOX_WARM_IDLE=%s", idle));
  }
  spec->sandbox.warm_zygote = true;
  /* No pid namespace of its own: its kernels' namespaces are then children of the host's, and live
     on when the zygote, its sandbox's pid 1 or this server die (docs/warm.md). */
  spec->sandbox.ns_flags = KBOX_NS_FLAGS_ALL & ~(uint64_t)CLONE_NEWPID;
  spec->sec.seccomp_unconfined = true; /* it unshares and mounts for its kernels; it runs no user code */
  spec->limits.memory_bytes = 2ULL << 30;
  return 0;
}

/* The key directory, owned by the zygote's user (it reaches its server's socket there), 0700;
   *zuid receives that user's host uid. */
static int make_keydir(const struct kbox_spec *spec, const char *keydir, uid_t *zuid, kbox_error_t *err) {
  if (mkdir(keydir, 0700) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating %s", keydir);
  if (spec->rootless) { /* the zygote's one id is ours: the directory is already its */
    *zuid = geteuid();
    return 0;
  }
  struct kbox_idmap map;
  if (kbox_idmap_compute(spec, &map, err) < 0) return -1;
  *zuid = map.base + spec->sandbox.uid;
  if (chown(keydir, *zuid, map.base + spec->sandbox.gid) < 0) return kbox_error_make(err, errno, "chown %s", keydir);
  return 0;
}

/* The server's lock on KEYDIR.lock: the fd, -2 when another server holds it. Probes
   (kbox_warm_serving) hold it for microseconds, so a busy lock is retried for a moment first. */
static int take_lock(const char *keydir, kbox_error_t *err) {
  char path[PATH_MAX + 8];
  snprintf(path, sizeof(path), "%s.lock", keydir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return kbox_error_make(err, errno, "opening %s", path);
  for (int i = 0; i < 20; i++) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno != EWOULDBLOCK) break;
    usleep(5000);
  }
  close(fd);
  return -2;
}

/* The peer's credentials of a connected unix socket. */
static int peer_of(int fd, struct ucred *uc) {
  socklen_t n = sizeof(*uc);
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &n);
}

/* The server's sockets: serve.sock, which only the zygote (its host uid) may connect to once, and
   zygote.sock, the callers' socket, made once the zygote said it is ready. Every caller is checked
   (SO_PEERCRED: root or the server's own uid) before its connection is handed to the zygote. */
struct server {
  char keydir[PATH_MAX];
  uid_t zygote_uid;
  int ctl_listen, ctl, pub;
  bool stopping; /* asked to stop: no new callers' socket */
};

static void path_in(const struct server *sv, const char *name, char *out, size_t n) {
  snprintf(out, n, "%s/%s", sv->keydir, name);
}

/* No more callers: remove the callers' socket. */
static void stop_serving(struct server *sv) {
  char path[PATH_MAX + 32];
  path_in(sv, "zygote.sock", path, sizeof(path));
  unlink(path);
  if (sv->pub >= 0) close(sv->pub);
  sv->pub = -1;
}

/* The zygote connects to serve.sock: keep the first connection from its uid, refuse others. */
static void on_zygote_connect(struct server *sv) {
  /* Non-blocking: a wedged zygote that reads nothing must not wedge its server (a connection that
     does not fit in its queue is closed, and its caller starts cold). */
  int fd = accept4(sv->ctl_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  struct ucred uc;
  if (sv->ctl >= 0 || peer_of(fd, &uc) < 0 || uc.uid != sv->zygote_uid) {
    kbox_warn("warm: refused a connection to the zygote's control socket (not the zygote)");
    close(fd);
    return;
  }
  sv->ctl = fd;
  char path[PATH_MAX + 32];
  path_in(sv, "serve.sock", path, sizeof(path));
  unlink(path);
  close(sv->ctl_listen);
  sv->ctl_listen = -1;
}

/* The zygote said it is ready: make the callers' socket (bound under a temporary name, then
   renamed: callers see it only once it accepts). */
static void on_zygote_message(struct server *sv) {
  char buf[16];
  ssize_t r = recv(sv->ctl, buf, sizeof(buf), MSG_DONTWAIT);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  char path[PATH_MAX + 32], tmp[PATH_MAX + 32];
  path_in(sv, "zygote.sock", path, sizeof(path));
  if (r <= 0) { /* the zygote is gone: no more kernels from this server */
    stop_serving(sv);
    close(sv->ctl);
    sv->ctl = -1;
    return;
  }
  if (sv->stopping || sv->pub >= 0 || r != 5 || memcmp(buf, "ready", 5) != 0) return;
  path_in(sv, "zygote.sock.tmp", tmp, sizeof(tmp));
  kbox_error_t err = NULL;
  sv->pub = kbox_warm_listen(tmp, 128, &err);
  if (sv->pub < 0 || rename(tmp, path) < 0) {
    kbox_warn("warm: cannot make the zygote's socket: %s", err != NULL ? err->msg : strerror(errno));
    kbox_error_free(&err);
    return;
  }
  kbox_info("warm: zygote %s ready", sv->keydir);
}

/* A caller: hand its connection to the zygote if it is root or our own uid. */
static void on_caller(struct server *sv) {
  int fd = accept4(sv->pub, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  struct ucred uc = {.pid = 0, .uid = (uid_t)-1};
  if (peer_of(fd, &uc) < 0 || (uc.uid != 0 && uc.uid != geteuid())) {
    kbox_warn("warm: refused a caller with uid %d (pid %d): only root and uid %d may ask this zygote for kernels",
              (int)uc.uid, (int)uc.pid, (int)geteuid());
    close(fd);
    return;
  }
  kbox_error_t err = NULL;
  if (kbox_warm_send(sv->ctl, "k", 1, &fd, 1, &err) < 0) kbox_error_free(&err); /* the caller sees EOF, starts cold */
  close(fd);
}

static void serve_loop(struct kbox_sandbox *sb, int sigfd, struct server *sv, struct kbox_warm_pool *pool) {
  long long kill_at = 0;
  while (!sb->reaped) {
    enum { P_PID, P_SIG, P_CHAN, P_CTL_LISTEN, P_CTL, P_PUB, P_N };
    struct pollfd p[P_N] = {{.fd = sb->pidfd, .events = POLLIN}, {.fd = sigfd, .events = POLLIN},
                            {.fd = sb->chan, .events = POLLIN}, {.fd = sv->ctl_listen, .events = POLLIN},
                            {.fd = sv->ctl, .events = POLLIN}, {.fd = sv->pub, .events = POLLIN}};
    int wait = kill_at ? 200 : kbox_warm_pool_tick(pool); /* the pool's refills (pool_fill.c) */
    int r = poll(p, P_N, wait); /* fds of -1 are ignored */
    if (r < 0 && errno != EINTR) break;
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP) {
        kbox_warm_pool_stop(pool);
        sv->stopping = true;
        stop_serving(sv); /* a `warm start` right after `warm stop` must not take us for ready */
        kbox_sandbox_signal(sb, SIGTERM);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        kill_at = now.tv_sec * 1000LL + now.tv_nsec / 1000000 + STOP_GRACE_MS;
      }
    }
    if (kill_at) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec * 1000LL + now.tv_nsec / 1000000 >= kill_at) kbox_sandbox_kill(sb);
    }
    if (sb->chan >= 0 && (p[P_CHAN].revents & (POLLIN | POLLHUP))) {
      kbox_error_t ignored = NULL;
      kbox_sandbox_on_message(sb, &ignored);
      kbox_error_free(&ignored);
    }
    if (p[P_CTL_LISTEN].revents & POLLIN) on_zygote_connect(sv);
    if (p[P_CTL].revents & (POLLIN | POLLHUP | POLLERR)) on_zygote_message(sv);
    if (sv->pub >= 0 && (p[P_PUB].revents & POLLIN)) on_caller(sv);
    if (p[P_PID].revents & POLLIN) kbox_sandbox_reap(sb);
  }
}

/* Remove what this server made in its key directory (it holds the lock: they are its own). */
static void serve_cleanup(const struct server *sv) {
  char path[PATH_MAX + 32];
  static const char *const names[] = {"zygote.sock", "zygote.sock.tmp", "serve.sock", NULL};
  for (size_t i = 0; names[i] != NULL; i++) {
    path_in(sv, names[i], path, sizeof(path));
    unlink(path);
  }
  snprintf(path, sizeof(path), "%s.pid", sv->keydir);
  unlink(path);
  rmdir(sv->keydir);
}

int kbox_warm_serve(struct kbox_spec *spec, kbox_error_t *err) {
  struct server sv = {.ctl_listen = -1, .ctl = -1, .pub = -1};
  char path[PATH_MAX + 32];
  if (kbox_warm_key_dir(spec, sv.keydir, sizeof(sv.keydir), err) < 0) return -1;
  /* Nothing of the key is touched before the lock: a second server (a `kbox warm start` racing a
     kernel that spawned one) leaves the first one's files alone. */
  cleanup_close int lock = take_lock(sv.keydir, err);
  if (lock == -2) {
    kbox_info("warm: a server for %s is already running", sv.keydir);
    return 0;
  }
  if (lock < 0) return -1;
  snprintf(path, sizeof(path), "%s.log", sv.keydir);
  int log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (log >= 0 && log != 2) {
    dup2(log, 2);
    close(log);
  }
  serve_cleanup(&sv); /* a killed server's leftovers */
  if (make_keydir(spec, sv.keydir, &sv.zygote_uid, err) < 0) return -1;
  path_in(&sv, "serve.sock", path, sizeof(path));
  if ((sv.ctl_listen = kbox_warm_listen(path, 128, err)) < 0) return -1;
  if (chown(path, sv.zygote_uid, (gid_t)-1) < 0) return kbox_error_make(err, errno, "chown %s", path);
  snprintf(path, sizeof(path), "%s.pid", sv.keydir);
  char pid[32];
  snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
  cleanup_close int pfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (pfd < 0 || write(pfd, pid, strlen(pid)) < 0) return kbox_error_make(err, errno, "writing %s", path);
  int rc = -1;
  struct kbox_sandbox sb;
  cleanup_close int sigfd = -1;
  static struct kbox_warm_pool pool;
  if (zygote_spec(spec, sv.keydir, err) == 0 && (sigfd = kbox_sandbox_signalfd(err)) >= 0) {
    /* Rootless: no pool (a claim joins a pool kernel's namespaces as the host's root), and the
       zygote's rlimits leave room for its kernels' own. */
    if (!spec->rootless) kbox_warm_pool_init(&pool, spec, sv.keydir);
    if (spec->rootless) kbox_rlimits_soft_only();
    if ((rc = kbox_sandbox_start(&sb, spec, err)) == 0) {
      kbox_info("warm: zygote %s started (sandbox pid %d)", sv.keydir, (int)sb.pid);
      serve_loop(&sb, sigfd, &sv, &pool);
    }
    kbox_warm_pool_stop(&pool);
    kbox_sandbox_destroy(&sb);
  }
  if (sv.ctl_listen >= 0) close(sv.ctl_listen);
  if (sv.ctl >= 0) close(sv.ctl);
  if (sv.pub >= 0) close(sv.pub);
  serve_cleanup(&sv);
  return rc;
}
