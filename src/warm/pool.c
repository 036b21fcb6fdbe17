/* The claim side of the warm pool (docs/warm.md, "The pool"): take a ready kernel from a holder
   whose settings match and give it what this kbox run asked for, so that it is the kernel a fork
   would have made: this id's cgroups with its limits (the kernel's processes are moved in), its
   hostname, workdir and binds (mounted into the kernel's namespaces from the host), its run dir
   (the kernel's is renamed over ours), and its environment, cwd and stderr (sent to the kernel,
   which applies them before it answers). */
#include "warm/pool.h"
#include "util/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "cgroup/limits.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/trace.h"
#include "warm/proto.h"

#define OFFER_MS 2000   /* a holder that does not answer by then is busy or gone: next slot */
#define SETTLE_MS 10000 /* the kernel applying the claim's settings */

int kbox_warm_pool_norm(const struct kbox_spec *spec, char **out, size_t *len, kbox_error_t *err) {
  struct kbox_spec n = *spec; /* shallow: encode only reads */
  n.id = n.sandbox.hostname = (char *)"";
  n.sandbox.workdir = NULL;
  n.sandbox.binds = NULL;
  n.sandbox.n_binds = 0;
  n.sandbox.env = (struct kbox_strv){0};
  n.verbosity = 0;
  return kbox_warm_encode_untraced(&n, out, len, err);
}

int kbox_warm_pool_dir(const char *keydir, char *out, size_t n, bool mk, kbox_error_t *err) {
  if (snprintf(out, n, "%s.pool", keydir) >= (int)n) return kbox_error_make(err, 0, "%s: path too long", keydir);
  if (mk && mkdir(out, 0700) < 0 && errno != EEXIST) return kbox_error_make(err, errno, "creating %s", out);
  return 0;
}

void kbox_warm_pool_touch(const char *dir) {
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%.*s/wanted", PATH_MAX - 8, dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return;
  futimens(fd, NULL);
  close(fd);
}

int kbox_warm_pool_put(const char *path, const char *text, kbox_error_t *err) {
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return kbox_error_make(err, errno, "creating %s", path);
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) return kbox_error_make(err, errno, "writing %s", path);
  return 0;
}

const char *kbox_warm_pool_kdir(const struct kbox_spec *spec) {
  for (size_t i = 0; i < spec->sandbox.n_binds; i++)
    if (strcmp(spec->sandbox.binds[i].dst, KBOX_WARM_RUN_INNER) == 0) return spec->sandbox.binds[i].src;
  return NULL;
}

/* Why spec cannot take a pool kernel ("" when it can): what a claim cannot give a running kernel. */
static const char *not_poolable(const struct kbox_spec *s) {
  if (s->sandbox.net != KBOX_NET_NONE || s->sandbox.net_relay_sock != NULL) return "--net allow";
  if (s->audit_path != NULL) return "--audit";
  if (s->sandbox.overlays.n > 0) return "--profile-dir / --ipython-dir";
  if (s->kernel.args.n > 0) return "the client passed kernel arguments";
  if (kbox_warm_pool_kdir(s) == NULL) return "no run dir";
  static const char *const app_env[] = {"IPYTHON", "JUPYTER", "JPY_", NULL}; /* read as the app starts */
  for (size_t i = 0; i < s->sandbox.env.n; i++)
    for (size_t k = 0; app_env[k] != NULL; k++)
      if (strncmp(s->sandbox.env.v[i], app_env[k], strlen(app_env[k])) == 0) return "an --env variable is read as the kernel app starts";
  return "";
}


/* Wait up to ms for fd to become readable; 0 on time out. */
static int wait_in(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r;
  do r = poll(&p, 1, ms); while (r < 0 && errno == EINTR);
  return r;
}

/* Our run dir becomes the pool kernel's: its sockets and connection file move under our id; ours
   waits beside it (DIR.own) until the claim is through. */
static int take_rundir(const char *pool_kdir, const char *kdir, kbox_error_t *err) {
  char own[PATH_MAX];
  snprintf(own, sizeof(own), "%.*s.own", PATH_MAX - 8, kdir);
  if (rename(kdir, own) < 0) return kbox_error_make(err, errno, "moving %s aside", kdir);
  if (rename(pool_kdir, kdir) < 0) {
    kbox_error_make(err, errno, "moving the pool kernel's run dir %s to %s", pool_kdir, kdir);
    rename(own, kdir);
    return -1;
  }
  return 0;
}

/* After the claim: drop our own run dir (claimed) or put it back in place of the pool kernel's
   (failed: the fork that follows uses ours, with our key). */
static void end_rundir(const char *kdir, bool claimed) {
  char own[PATH_MAX];
  snprintf(own, sizeof(own), "%.*s.own", PATH_MAX - 8, kdir);
  const char *drop = claimed ? own : kdir;
  DIR *d = opendir(drop);
  if (d != NULL) {
    for (struct dirent *e; (e = readdir(d)) != NULL;)
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
  }
  rmdir(drop);
  if (!claimed && rename(own, kdir) < 0) kbox_warn("warm pool: putting back %s: %s", kdir, strerror(errno));
}

/* Send the claim's settings (the whole request, as a fork gets it) and our stderr to the kernel at
   once: it applies environment and stdio while we do the rest, then waits for settle_end. */
static int settle_begin(const char *pool_kdir, const struct kbox_spec *spec, kbox_error_t *err) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (snprintf(a.sun_path, sizeof(a.sun_path), "%s/" KBOX_WARM_CLAIM_SOCK, pool_kdir) >= (int)sizeof(a.sun_path))
    return kbox_error_make(err, 0, "%s is too long for a socket path", pool_kdir);
  cleanup_close int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return kbox_error_make(err, errno, "socket");
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) return kbox_error_make(err, errno, "connecting to the pool kernel");
  cleanup_free char *req = NULL;
  size_t len = 0;
  int stderr_fd = 2;
  if (kbox_warm_encode(spec, &req, &len, err) < 0 || kbox_warm_send(fd, req, len, &stderr_fd, 1, err) < 0) return -1;
  return steal_fd(fd);
}

/* The workdir is mounted: the kernel changes directory, removes its claim socket and answers
   "ok" (or why not). */
static int settle_end(int fd, const struct kbox_spec *spec, kbox_error_t *err) {
  /* Without a workdir the kernel's cwd (its home) needs no mount: it did not wait for us. */
  if (spec->sandbox.workdir != NULL && send(fd, "go", 2, MSG_NOSIGNAL) != 2) return kbox_error_make(err, errno, "the pool kernel ended while taking its settings");
  if (wait_in(fd, SETTLE_MS) <= 0) return kbox_error_make(err, 0, "the pool kernel did not take its settings within %d s", SETTLE_MS / 1000);
  char reply[512];
  ssize_t got = recv(fd, reply, sizeof(reply) - 1, 0);
  if (got <= 0) return kbox_error_make(err, got < 0 ? errno : 0, "the pool kernel ended while taking its settings");
  reply[got] = '\0';
  if (strcmp(reply, "ok") != 0) return kbox_error_make(err, 0, "the pool kernel refused its settings: %s", reply);
  return 0;
}

/* Every limit must sit in a cgroup: a running kernel cannot take rlimits. */
static bool limits_in_cgroups(const struct kbox_cgroup *cg) {
  if (cg == NULL) return false;
  for (int i = 0; i < KBOX_LIM_N; i++)
    if (cg->mech[i] == KBOX_MECH_RLIMIT) return false;
  return true;
}

/* This id's cgroups with its limits for the kernel: its own renamed, else new ones it is moved into
   (while the child of entry mounts). */
static int give_cgroups(struct kbox_sandbox *sb, const struct kbox_spec *spec, const struct kbox_pool_msg *offer, bool *taken,
                        kbox_error_t *err) {
  const char *why = "";
  if (kbox_warm_pool_plan_cgroups(spec, &sb->cgroup, offer, err) < 0 ||
      kbox_warm_pool_take_cgroups(sb->cgroup, offer, taken, &why, err) < 0)
    return -1;
  int rc = kbox_limits_finish(&spec->limits, sb->cgroup, err);
  sb->cgroup->adopt_existing = false;
  if (rc < 0) return -1;
  if (!limits_in_cgroups(sb->cgroup)) return kbox_error_make(err, 0, "a limit is enforced by rlimits, not cgroups");
  kbox_trace_step("pool: cgroups made");
  if (*taken) return 0;
  kbox_debug("warm pool: %s: moving the kernel into new cgroups", why);
  return kbox_warm_pool_move(sb->pid, sb->cgroup, err);
}

/* Make the offered kernel ours (see the top of the file). The kernel takes its environment, the
   child of entry mounts and we make the cgroups, all at once; then the run dir, then the cwd. */
static int adopt(struct kbox_sandbox *sb, struct kbox_spec *spec, const struct kbox_pool_msg *offer, int pidfd, int chan,
                 bool *taken, kbox_error_t *err) {
  if (kbox_sandbox_reserve(sb, spec, err) < 0) {
    close(pidfd);
    close(chan);
    return -1;
  }
  sb->pidfd = pidfd;
  sb->chan = chan;
  sb->foreign = true;
  sb->workload_pid = offer->workload_pid;
  clock_gettime(CLOCK_MONOTONIC, &sb->started);
  if (wait_in(pidfd, 0) != 0 || (sb->pid = kbox_warm_pidfd_pid(pidfd)) <= 0) return kbox_error_make(err, 0, "the pool kernel had ended");
  kbox_trace_step("pool: offer taken");
  cleanup_close int settle = settle_begin(offer->kdir, spec, err);
  if (settle < 0) return -1;
  kbox_trace_step("pool: settings sent to the kernel");
  struct kbox_pool_entry entry;
  if (kbox_warm_pool_enter_start(sb->pid, spec, &entry, err) < 0) return -1;
  kbox_error_t later = NULL;
  int rc = give_cgroups(sb, spec, offer, taken, err);
  if (kbox_warm_pool_enter_finish(&entry, rc == 0 ? err : &later) < 0) rc = -1;
  kbox_error_free(&later);
  if (rc < 0) return -1;
  const char *kdir = kbox_warm_pool_kdir(spec);
  if (take_rundir(offer->kdir, kdir, err) < 0) return -1;
  int settled = settle_end(settle, spec, err);
  end_rundir(kdir, settled == 0);
  if (settled < 0) return -1;
  kbox_trace_step("pool: run dir taken, the kernel settled");
  return 0;
}

/* Ask the holder at path for its kernel. 1: ours; 0: this slot is of no use (gone, busy, its
   kernel dead); -1: its settings differ from ours (every slot of the pool has the same). */
static int try_slot(struct kbox_sandbox *sb, struct kbox_spec *spec, const char *path, const char *norm, size_t norm_len,
                    kbox_error_t *err) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (snprintf(a.sun_path, sizeof(a.sun_path), "%s", path) >= (int)sizeof(a.sun_path)) return 0;
  cleanup_close int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) return 0;
  cleanup_free char *msg = xmalloc(sizeof(struct kbox_pool_msg) + norm_len);
  struct kbox_pool_msg claim = {.magic = KBOX_WARM_POOL_MAGIC, .type = KBOX_POOL_CLAIM};
  memcpy(msg, &claim, sizeof(claim));
  memcpy(msg + sizeof(claim), norm, norm_len);
  if (kbox_warm_send(fd, msg, sizeof(claim) + norm_len, NULL, 0, err) < 0 || wait_in(fd, OFFER_MS) <= 0) {
    kbox_error_free(err);
    return 0;
  }
  struct kbox_pool_msg offer;
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  long got = kbox_warm_recv(fd, &offer, sizeof(offer), fds, &n, err);
  if (got != (long)sizeof(offer) || offer.magic != KBOX_WARM_POOL_MAGIC || offer.type != KBOX_POOL_OFFER ||
      (offer.ok && n != 2)) {
    for (int i = 0; i < n; i++) close(fds[i]);
    kbox_error_free(err);
    return 0;
  }
  if (!offer.ok) return -1;
  offer.kdir[sizeof(offer.kdir) - 1] = '\0';
  for (int i = 0; i < KBOX_POOL_CG_N; i++) offer.cgroups[i][sizeof(offer.cgroups[i]) - 1] = '\0';
  bool taken = false;
  int rc = adopt(sb, spec, &offer, fds[0], fds[1], &taken, err);
  struct kbox_pool_msg end = {.magic = KBOX_WARM_POOL_MAGIC, .type = rc == 0 ? KBOX_POOL_DONE : KBOX_POOL_FAIL, .ok = taken};
  kbox_error_t ignored = NULL; /* a holder gone by now leaves the kernel ours all the same */
  kbox_warm_send(fd, &end, sizeof(end), NULL, 0, &ignored);
  kbox_error_free(&ignored);
  return rc == 0 ? 1 : 0;
}

/* Does the kernel of slot path (NAME.sock) already use nine tenths of spec's memory limit? Its
   start-up memory is charged to the cgroups a claim takes (its holder notes it in NAME.mem). */
static bool too_big(const char *path, const struct kbox_spec *spec) {
  char mem[PATH_MAX + 100], *text = NULL;
  size_t l = strlen(path);
  if (spec->limits.memory_bytes == 0 || l < 5) return false;
  snprintf(mem, sizeof(mem), "%.*s.mem", (int)(l - 5), path);
  kbox_error_t err = NULL;
  if (kbox_read_file(mem, 64, &text, NULL, &err) < 0) {
    kbox_error_free(&err);
    return false;
  }
  long long used = strtoll(text, NULL, 10);
  free(text);
  return used > 0 && (unsigned long long)used >= spec->limits.memory_bytes / 10 * 9;
}

/* The slot sockets of the pool, in a random order (concurrent claimers spread over them). */
static size_t list_slots(const char *dir, char names[][96], size_t cap) {
  size_t n = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL && n < cap;) {
    size_t l = strlen(e->d_name);
    if (l > 5 && l < 90 && strcmp(e->d_name + l - 5, ".sock") == 0) snprintf(names[n++], 96, "%s", e->d_name);
  }
  closedir(d);
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  unsigned seed = (unsigned)(t.tv_nsec ^ getpid());
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)rand_r(&seed) % i;
    char tmp[96];
    memcpy(tmp, names[i - 1], 96);
    memcpy(names[i - 1], names[j], 96);
    memcpy(names[j], tmp, 96);
  }
  return n;
}

/* A failed claim made this id's cgroups; the fork that follows makes them again: this reaper must
   not wake now and remove those (it waits, and cleans up with the fork's at exit). */
static void park_reaper(struct kbox_sandbox *sb) {
  static int parked = -1;
  if (sb->cgroup == NULL || sb->cgroup->reaper_fd < 0) return;
  if (parked >= 0) close(parked);
  parked = sb->cgroup->reaper_fd;
  sb->cgroup->reaper_fd = -1;
}

int kbox_warm_pool_claim(struct kbox_sandbox *sb, struct kbox_spec *spec, const char *keydir) {
  char dir[PATH_MAX], names[KBOX_WARM_POOL_MAX][96];
  kbox_error_t err = NULL;
  kbox_trace_step("pool: looking for a kernel");
  if (kbox_warm_pool_dir(keydir, dir, sizeof(dir), false, &err) < 0) {
    kbox_error_free(&err);
    return 0;
  }
  size_t n = list_slots(dir, names, KBOX_WARM_POOL_MAX);
  if (n > 0 || access(dir, F_OK) == 0) kbox_warm_pool_touch(dir);
  if (n == 0) {
    int ready = 0, size = 0;
    kbox_warm_pool_count(keydir, &ready, &size);
    if (size > 0) kbox_info("warm pool: no ready kernel: forking");
    return 0;
  }
  const char *why = not_poolable(spec);
  if (why[0] != '\0') {
    kbox_info("warm pool: not for this kernel (%s): forking", why);
    return 0;
  }
  cleanup_free char *norm = NULL;
  size_t norm_len = 0;
  if (kbox_warm_pool_norm(spec, &norm, &norm_len, &err) < 0) {
    kbox_info("warm pool: %s: forking", err->msg);
    kbox_error_free(&err);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    char path[PATH_MAX + 100];
    snprintf(path, sizeof(path), "%.*s/%.95s", PATH_MAX - 1, dir, names[i]);
    if (too_big(path, spec)) {
      kbox_info("warm pool: the pool kernel %s already uses nine tenths of --memory: forking", names[i]);
      return 0;
    }
    int r = try_slot(sb, spec, path, norm, norm_len, &err);
    if (r == 1) {
      kbox_debug("warm pool: claimed %s in %lld ms", names[i], kbox_sandbox_elapsed_ms(sb));
      return 1;
    }
    if (r < 0) {
      kbox_info("warm pool: the pool kernels' settings differ from this kernel's (profile, disk, uid, nofile): forking");
      return 0;
    }
    if (err != NULL) { /* a claimed kernel failed: undo this id's part, try the next */
      kbox_warn("warm pool: a pool kernel could not be claimed (%s): trying another", err->msg);
      kbox_error_free(&err);
      park_reaper(sb);
      kbox_sandbox_destroy(sb);
    }
  }
  kbox_info("warm pool: no pool kernel could be claimed: forking");
  return 0;
}
