/* A pool holder (docs/warm.md, "The pool"): a `kbox run` started by the filler, whose kernel was
   forked like any other and started its app. Once the kernel listens for its claim, the holder
   offers it on a slot socket; the first claimer whose settings match gets pid 1's pidfd and
   channel and the run dir; after its DONE the holder exits without touching the kernel. Until then
   the holder owns everything: if it ends (SIGTERM from the filler, SIGKILL), its kernel ends too
   and its cgroups and run dir go as a cold kernel's do. */
#include "warm/pool.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/clock.h"
#include "warm/proto.h"

#define READY_MS 120000 /* the kernel app listening for its claim */
#define CLAIM_MS 30000  /* a claimer between OFFER and DONE */

bool kbox_warm_pool_holder(void) { return getenv(KBOX_WARM_POOL_SLOT_ENV) != NULL; }


/* A stop signal arrived on sigfd. */
static bool stopped(int sigfd) {
  struct signalfd_siginfo si;
  bool stop = false;
  while (read(sigfd, &si, sizeof(si)) == sizeof(si))
    stop |= si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP;
  return stop;
}

/* Wait one event of the kernel (its end, a message of pid 1) or sigfd, up to ms; false when the
   holder must end (the kernel ended, a stop signal). */
static bool watch(struct kbox_sandbox *sb, int sigfd, int extra, int ms, bool *extra_ready) {
  struct pollfd p[4] = {{.fd = sb->pidfd, .events = POLLIN}, {.fd = sigfd, .events = POLLIN}, {.fd = sb->chan, .events = POLLIN},
                        {.fd = extra, .events = POLLIN}};
  int r = poll(p, extra >= 0 ? 4 : 3, ms);
  if (r < 0) return errno == EINTR;
  if (p[1].revents & POLLIN && stopped(sigfd)) return false;
  if (p[2].revents & (POLLIN | POLLHUP)) {
    kbox_error_t ignored = NULL;
    kbox_sandbox_on_message(sb, &ignored); /* pid 1 only speaks when the kernel ended */
    kbox_error_free(&ignored);
    return false;
  }
  if (p[0].revents & POLLIN) return false;
  if (extra_ready != NULL) *extra_ready = extra >= 0 && (p[3].revents & POLLIN);
  return true;
}

/* The kernel app is up once its claim socket exists (zygote.py makes it from the app's loop). */
static int wait_ready(struct kbox_sandbox *sb, const char *kdir, int sigfd) {
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/" KBOX_WARM_CLAIM_SOCK, kdir);
  long long until = kbox_now_ms() + READY_MS;
  while (access(path, F_OK) != 0) {
    if (kbox_now_ms() > until) {
      kbox_warn("warm pool: the pool kernel did not become ready within %d s", READY_MS / 1000);
      return -1;
    }
    if (!watch(sb, sigfd, -1, 10, NULL)) return -1;
  }
  return 0;
}

/* Bind the slot socket under a temporary name and rename it: claimers see only a listening one. */
static int listen_slot(const char *slot, kbox_error_t *err) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", slot) >= (int)sizeof(tmp))
    return kbox_error_make(err, 0, "%s is too long for a socket path", slot);
  cleanup_close int fd = kbox_warm_listen(tmp, 32, err);
  if (fd < 0) return -1;
  if (rename(tmp, slot) < 0) return kbox_error_make(err, errno, "listening on %s", slot);
  return steal_fd(fd);
}

/* Record the kernel's memory beside the slot, for the filler's budget. */
static void note_memory(const struct kbox_sandbox *sb, const char *slot) {
  char path[PATH_MAX], text[32];
  snprintf(path, sizeof(path), "%.*s.mem", (int)(strlen(slot) - 5), slot);
  long long mem = kbox_cgroup_pid_memory(sb->pid);
  snprintf(text, sizeof(text), "%lld\n", mem);
  kbox_error_t ignored = NULL;
  if (kbox_warm_pool_put(path, text, &ignored) < 0) kbox_error_free(&ignored);
}

/* One claimer on conn. 1: handed over; 0: it did not match or went away (keep offering); -1: it
   failed after the offer (the kernel is no longer fit to offer). */
static int serve_claim(struct kbox_sandbox *sb, int conn, const char *slot, const char *kdir, const char *norm,
                       size_t norm_len) {
  struct pollfd p = {.fd = conn, .events = POLLIN};
  if (poll(&p, 1, 2000) <= 0) return 0;
  char buf[sizeof(struct kbox_pool_msg) + KBOX_WARM_MAX_REQ / 4];
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  kbox_error_t err = NULL;
  long got = kbox_warm_recv(conn, buf, sizeof(buf), fds, &n, &err);
  for (int i = 0; i < n; i++) close(fds[i]);
  kbox_error_free(&err);
  struct kbox_pool_msg m, offer = {.magic = KBOX_WARM_POOL_MAGIC, .type = KBOX_POOL_OFFER};
  if (got < (long)sizeof(m)) return 0;
  memcpy(&m, buf, sizeof(m));
  if (m.magic != KBOX_WARM_POOL_MAGIC || m.type != KBOX_POOL_CLAIM) return 0;
  if ((size_t)got - sizeof(m) != norm_len || memcmp(buf + sizeof(m), norm, norm_len) != 0) {
    kbox_warm_send(conn, &offer, sizeof(offer), NULL, 0, &err); /* ok = 0: settings differ */
    kbox_error_free(&err);
    return 0;
  }
  unlink(slot); /* no other claimer finds it now */
  offer.ok = 1;
  offer.workload_pid = sb->workload_pid;
  snprintf(offer.kdir, sizeof(offer.kdir), "%s", kdir);
  const struct kbox_cgroup *cg = sb->cgroup;
  if (cg != NULL && cg->v2_dir != NULL) snprintf(offer.cgroups[KBOX_POOL_CG_V2], sizeof(offer.cgroups[0]), "%s", cg->v2_dir);
  for (int c = 0; cg != NULL && c < KBOX_CTL_N; c++)
    if (cg->v1_dir[c] != NULL) snprintf(offer.cgroups[KBOX_POOL_CG_V1 + c], sizeof(offer.cgroups[0]), "%s", cg->v1_dir[c]);
  int give[2] = {sb->pidfd, sb->chan};
  if (kbox_warm_send(conn, &offer, sizeof(offer), give, 2, &err) < 0) {
    kbox_error_free(&err);
    return -1;
  }
  p.revents = 0;
  if (poll(&p, 1, CLAIM_MS) <= 0) return -1;
  got = kbox_warm_recv(conn, &m, sizeof(m), fds, &n, &err);
  kbox_error_free(&err);
  if (got != (long)sizeof(m) || m.magic != KBOX_WARM_POOL_MAGIC || m.type != KBOX_POOL_DONE) return -1;
  if (m.ok) kbox_warm_pool_release_cgroups(sb->cgroup); /* the claimer's now, kernel inside */
  return 1;
}

int kbox_warm_pool_hold(struct kbox_sandbox *sb, const struct kbox_spec *spec, int sigfd) {
  const char *slot = getenv(KBOX_WARM_POOL_SLOT_ENV), *kdir = kbox_warm_pool_kdir(spec);
  kbox_error_t err = NULL;
  cleanup_free char *norm = NULL;
  size_t norm_len = 0;
  if (slot == NULL || kdir == NULL || strlen(slot) < 6 || kbox_warm_pool_norm(spec, &norm, &norm_len, &err) < 0) {
    if (err != NULL) kbox_warn("warm pool: %s", err->msg);
    kbox_error_free(&err);
    return 1;
  }
  if (wait_ready(sb, kdir, sigfd) < 0) return 1;
  note_memory(sb, slot);
  cleanup_close int lfd = listen_slot(slot, &err);
  if (lfd < 0) {
    kbox_warn("warm pool: %s", err->msg);
    kbox_error_free(&err);
    return 1;
  }
  kbox_debug("warm pool: %s ready in %lld ms", slot, kbox_sandbox_elapsed_ms(sb));
  int handed = 0;
  bool ready = false;
  while (handed == 0 && watch(sb, sigfd, lfd, -1, &ready)) {
    if (!ready) continue;
    int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) continue;
    handed = serve_claim(sb, conn, slot, kdir, norm, norm_len);
    close(conn);
  }
  unlink(slot);
  char mem[PATH_MAX];
  snprintf(mem, sizeof(mem), "%.*s.mem", (int)(strlen(slot) - 5), slot);
  unlink(mem);
  if (handed != 1) return 1;
  sb->pid = 0; /* the claimer supervises the kernel now: destroy must not kill it */
  return 0;
}
