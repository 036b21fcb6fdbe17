/* Rootless warm starts: the layer, bind and workdir trees a fork attaches. An unprivileged
   open_tree(OPEN_TREE_CLONE) is refused in the host's mount namespace, so a helper of the caller
   takes them in a user and mount namespace of its own (as a cold rootless pid 1 does in its own)
   and passes them back; the fork attaches them with move_mount (docs/warm.md, "Rootless"). */
#include "warm/trees.h"
#include "util/alloc.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "warm/proto.h"

/* The helper: its own namespaces, the trees, sent back in the request's order; never returns. */
__attribute__((noreturn)) static void helper(struct kbox_mounts *m, int sock) {
  kbox_error_t err = NULL;
  const struct kbox_spec *s = m->spec;
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0 || kbox_mounts_open_sources(m, &err) < 0) _exit(1);
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  for (size_t i = 0; i < s->sandbox.rootfs.n; i++) fds[n++] = m->lower_fds[i];
  for (size_t i = 0; i < s->sandbox.n_binds; i++) fds[n++] = m->bind_fds[i];
  if (s->sandbox.workdir != NULL) fds[n++] = m->workdir_fd;
  char one = 't';
  _exit(kbox_warm_send(sock, &one, 1, fds, n, &err) < 0 ? 1 : 0);
}

int kbox_warm_open_trees(struct kbox_mounts *m, kbox_error_t *err) {
  const struct kbox_spec *s = m->spec;
  size_t want = s->sandbox.rootfs.n + s->sandbox.n_binds + (s->sandbox.workdir != NULL ? 1 : 0);
  if (want + 1 > KBOX_WARM_MAX_FDS) return kbox_error_make(err, 0, "too many layers and binds");
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) return kbox_error_make(err, errno, "socketpair");
  pid_t pid = fork();
  if (pid < 0) {
    close(sp[0]);
    close(sp[1]);
    return kbox_error_make(err, errno, "fork");
  }
  if (pid == 0) {
    close(sp[0]);
    helper(m, sp[1]);
  }
  close(sp[1]);
  cleanup_close int sock = sp[0];
  int fds[KBOX_WARM_MAX_FDS], n = 0;
  char one;
  long got = kbox_warm_recv(sock, &one, 1, fds, &n, err);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (got < 0) return -1;
  if (got != 1 || (size_t)n != want) {
    for (int i = 0; i < n; i++) close(fds[i]);
    return kbox_error_make(err, 0, "taking the layers and binds in a user namespace of our own failed (unprivileged "
                                   "user and mount namespaces refused?)");
  }
  m->lower_fds = xcalloc(s->sandbox.rootfs.n + 1, sizeof(int));
  m->bind_fds = xcalloc(s->sandbox.n_binds + 1, sizeof(int));
  int k = 0;
  for (size_t i = 0; i < s->sandbox.rootfs.n; i++) m->lower_fds[i] = fds[k++];
  for (size_t i = 0; i < s->sandbox.n_binds; i++) m->bind_fds[i] = fds[k++];
  if (s->sandbox.workdir != NULL) m->workdir_fd = fds[k++];
  return 0;
}
