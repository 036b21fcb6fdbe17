/* The resolved sandbox specification: every option of `kbox run` after parsing and defaults. */
#ifndef KBOX_SPEC_SPEC_H
#define KBOX_SPEC_SPEC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"
#include "util/strv.h"

struct kbox_security;

struct kbox_bind {
  char *src;
  char *dst;
  bool ro;
};

enum kbox_net_mode { KBOX_NET_NONE = 0, KBOX_NET_ALLOW };

/* What the sandbox is built from and what runs in it. */
struct kbox_spec_sandbox {
  struct kbox_strv rootfs;   /* lower layers, bottom first (later --rootfs stack above) */
  char *workdir;             /* shared read-write at the same path, cwd of the workload */
  struct kbox_bind *binds;
  size_t n_binds;
  enum kbox_net_mode net;
  bool net_set;              /* --net given (a profile's net section applies otherwise) */
  struct kbox_strv net_allow; /* --net allow=LIST values (src/net/rules.h parses them) */
  uint64_t net_max_bytes;    /* --net-max-bytes, 0: none */
  char *net_relay_sock;      /* set by kbox: pid 1 starts the relay to this proxy socket (inside path) */
  struct kbox_strv env;      /* --env / --env-file values, applied over the default env */
  uid_t uid;                 /* identity inside the sandbox */
  gid_t gid;
  char *hostname;
  struct kbox_strv argv;     /* the workload command */
  struct kbox_strv overlays; /* host dirs shown at the same path, read-only below a tmpfs upper
                                in the disk budget (--profile-dir, --ipython-dir) */
  bool warm_zygote;          /* this sandbox hosts a zygote (src/warm): /proc and /sys are left
                                unmasked so that each forked kernel can mount its own, masked */
  uint64_t ns_flags;         /* clone3 namespace flags; 0 = all (KBOX_NS_FLAGS_ALL). kbox entrypoint
                                drops those a pod forbids; without CLONE_NEWUSER ids are not mapped */
  uint32_t fallbacks;        /* 1 << kbox_step (sandbox/achieved.h) for each set-up step that may fall
                                back when refused (kbox entrypoint); 0: a refused step is an error */
};

/* The limits (src/cgroup applies them; the profile's defaults fill those not *_set). */
struct kbox_spec_limits {
  uint64_t memory_bytes;
  uint64_t swap_bytes;
  uint64_t disk_bytes;       /* size cap of the overlay upper tmpfs */
  uint64_t pids;
  double cpus;
  uint64_t nofile;
  uint64_t timeout_ms;       /* 0: none */
  char *cgroup_parent;
  bool require_limits;
  /* which limits were given on the command line (the profile's defaults fill the others) */
  bool memory_set, swap_set, disk_set, pids_set, cpus_set, nofile_set;
};

/* Kernel mode (no CMD): src/kernel. */
struct kbox_spec_kernel {
  bool mode;                 /* set by kbox_spec_validate: no CMD was given */
  char *connection_file;     /* --connection-file: read if it exists (kernelspec), else written */
  char *ip;                  /* --ip (host side; an ipc path prefix with --transport ipc) */
  char *transport;           /* --transport tcp|ipc */
  unsigned port_lo, port_hi; /* --port-range, 0..0 = any */
  char *cmd;                 /* --kernel-cmd, with {connection_file} */
  uint64_t max_message;      /* --max-message bytes */
  uint64_t exec_timeout_ms;  /* --exec-timeout, 0: none */
  uint64_t idle_timeout_ms;  /* --idle-timeout, 0: none */
  bool insecure_no_key;      /* --insecure-no-key: a connection file without a key is accepted */
  bool detach;               /* --detach: supervise in the background (src/kernel/detach.c) */
  struct kbox_strv args;     /* arguments a client appended for the kernel (src/kernel/kernel_args.c) */
  bool cold;                 /* --cold: never start from a warm zygote (src/warm) */
};

/* Least privilege (src/security). */
struct kbox_spec_sec {
  char *profile;             /* name or path */
  bool seccomp_unconfined;
  struct kbox_security *loaded; /* borrowed: loaded profile + compiled filter (src/security) */
};

struct kbox_spec {
  char *id;
  bool id_given;
  struct kbox_spec_sandbox sandbox;
  struct kbox_spec_limits limits;
  struct kbox_spec_kernel kernel;
  struct kbox_spec_sec sec;
  char *report_path;         /* NULL: none, "-": stderr */
  char *audit_path;          /* --audit / KBOX_AUDIT: JSON Lines log on the host side */

  /* computed */
  bool rootless;             /* kbox runs without CAP_SYS_ADMIN in the initial user namespace */
  uid_t host_uid;            /* who runs kbox */
  gid_t host_gid;
  int verbosity;
};

void kbox_spec_init(struct kbox_spec *spec);
void kbox_spec_free(struct kbox_spec *spec);
void kbox_spec_add_bind(struct kbox_spec *spec, const char *src, const char *dst, bool ro);
/* Parse SRC[:DST][:ro|:rw] into spec. */
int kbox_spec_parse_bind(struct kbox_spec *spec, const char *arg, kbox_error_t *err);
/* Check everything that can be checked before anything starts (paths exist, values agree). */
int kbox_spec_validate(struct kbox_spec *spec, kbox_error_t *err);

#endif
