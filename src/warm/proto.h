/* The warm-start request: what kbox (host side) sends a zygote to make one kernel, as one
   SOCK_SEQPACKET message with file descriptors (SCM_RIGHTS), and the fd passing both sides use.
   Shared by the host side (client.c) and the zygote's library (child.c, libkbox-warm.so). */
#ifndef KBOX_WARM_PROTO_H
#define KBOX_WARM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "spec/spec.h"
#include "security/seccomp.h"
#include "util/error.h"

#define KBOX_WARM_MAGIC 0x6b627732u /* "kbw2": bump when the request layout changes */
#define KBOX_WARM_MAX_FDS 64
#define KBOX_WARM_MAX_REQ (1u << 20)
/* Where the zygote finds its socket directory and the library, inside its sandbox. */
#define KBOX_WARM_INNER_DIR "/run/kbox-warm"
#define KBOX_WARM_INNER_LIB "/usr/lib/kbox/libkbox-warm.so"
#define KBOX_WARM_ZYGOTE_PY "/usr/share/kbox/zygote.py"
/* Rootless: under the zygote's own /tmp (mount points cannot be made in the image's root-owned
   directories); zygote.py reads them from KBOX_WARM_INNER_DIR and KBOX_WARM_INNER_LIB. */
#define KBOX_WARM_ROOTLESS_DIR "/tmp/.kbox-warm"
#define KBOX_WARM_ROOTLESS_LIB "/tmp/.kbox-warm.so"

/* The order of the request's fds: the channel, then the detached trees of the layers, the binds and
   the workdir (as kbox_mounts_open_sources made them). The kernel's stdout/stderr comes with GO. */
enum { KBOX_WARM_FD_CHAN = 0, KBOX_WARM_FD_TREES = 1 };

struct kbox_warm_hdr {
  uint32_t magic;
  uint32_t text_len;    /* NUL-separated key=value fields */
  uint32_t n_progs;     /* seccomp programs that follow the text */
  uint32_t prog_len[2]; /* instructions per program */
};

/* Encode the parts of spec a forked kernel needs (and its compiled seccomp filter) into *out. */
int kbox_warm_encode(const struct kbox_spec *spec, char **out, size_t *len, kbox_error_t *err);
/* The same without --trace-setup's field (the pool key, src/warm/pool.c). */
int kbox_warm_encode_untraced(const struct kbox_spec *spec, char **out, size_t *len, kbox_error_t *err);
/* Decode into spec (initialised by the caller); the seccomp programs are copied to progs. */
int kbox_warm_decode(const char *buf, size_t len, struct kbox_spec *spec, struct kbox_seccomp_compiled *progs,
                     kbox_error_t *err);

/* Send / receive one message with up to KBOX_WARM_MAX_FDS descriptors. recv returns the byte
   count (0 on EOF) and fills fds/n_fds (received fds are close-on-exec). */
int kbox_warm_send(int sock, const void *buf, size_t len, const int *fds, int n_fds, kbox_error_t *err);
long kbox_warm_recv(int sock, void *buf, size_t cap, int *fds, int *n_fds, kbox_error_t *err);
/* A listening, non-blocking SOCK_SEQPACKET socket at path (replacing a stale one), or -1. */
int kbox_warm_listen(const char *path, int backlog, kbox_error_t *err);

/* env as NUL-separated KEY=VALUE strings ending with an empty one, in buf (what does not fit is left out). */
void kbox_warm_pack_env(const struct kbox_strv *env, char *buf, size_t cap);

/* Host pid of a pidfd (its fdinfo, in our pid namespace), -1 if unknown. */
pid_t kbox_warm_pidfd_pid(int pidfd);

#endif
